"""The IVCR-200K authors' scoring rules (ivcr_engine/eval/ivcr200k_authors.py), each checked on
the strings their scorer meets: our replies, the dataset's answers, and free text from a model."""
from __future__ import annotations

import pytest

from ivcr_engine.eval.ivcr200k_authors import (hull_iou, per_turn_table, predicted_span, score_turns, truth_span,
                                               video_number)


@pytest.mark.parametrize("text,n", [
    ("The intent is video retrieval. The given query happens in video 3.", 3),
    ("Video 10 it is", 10),
    ("VIDEO   7, then video 2", 7),          # the first one, any case, any whitespace
    ("video3", None),                        # a space is required
    ("video 11", None),                      # only 0..10 is a video number
    ("意图是视频检索。查询的内容出现在 video 2。", 2),
    ("no number here", None),
])
def test_video_number(text, n):
    assert video_number(text) == n


@pytest.mark.parametrize("text,span", [
    ("The given query happens 12.5s-20.0s.", (12.5, 20.0)),
    ("it happens 20s - 12.5s", (12.5, 20.0)),                            # put in order
    ("Best match at 12.2s-16.2s: speech at 12.2-16.2s", (12.2, 16.2)),   # the first pair
    ("A specific example is : 20.8 - 30.0 seconds. It starts at 3 - 5", (3.0, 5.0)),  # the prompt's example goes
    ("from 4 seconds\nuntil 9 seconds", (4.0, 9.0)),                     # first numbers of two sentences
    ("at 00:00:12 and on", (0.0, 0.0)),       # one number, one clock time: no pair
    ("starts 00:00:12? ends 00:01:03", (0.0, 0.0)),  # clock times never count: each sentence's first number ("00") pairs first
    ("nothing at all", (0.0, 0.0)),
    ("at 1..5s-2.5s", (1.5, 2.5)),                                       # runs of dots become one
])
def test_predicted_span(text, span):
    assert predicted_span(text) == span


def test_truth_span_is_strict_and_iou_is_over_the_hull():
    assert truth_span("The given query happens 4.3s-8.4s.") == (4.3, 8.4)
    assert truth_span("4.3 - 8.4 s") is None
    assert hull_iou((0.0, 10.0), (5.0, 15.0)) == pytest.approx(5 / 15)
    assert hull_iou((0.0, 2.0), (4.0, 6.0)) == 0.0
    assert hull_iou((3.0, 3.0), (3.0, 3.0)) == 0.0


def dialogue(turns, split="test", type_="x"):
    conv = []
    for q, a, gt in turns:
        conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a, "gt_se": gt}]
    return {"split": split, "type": type_, "conversations": conv}


def test_turns_are_found_by_question_numbered_by_position_and_filtered_by_split_and_type():
    raw = [dialogue([("<video>\nfind the parrot", "video 2", [-1, -1]), ("when does it fly?", "10.0s-20.0s", [10, 20])]),
           dialogue([("find the parrot", "video 1", [-1, -1])], split="train"),
           dialogue([("find the dog", "video 1", [-1, -1])], type_=[0])]
    preds = [{"user_q": "when does it fly?", "output": "12.0s-20.0s"},
             {"user_q": "<video>\nfind the parrot", "output": "in video 2"},
             {"user_q": "<video>\nfind the parrot", "output": "in video 5"}]  # a second record: never read
    rows = score_turns(preds, raw)
    assert [(r["dialogue"], r["turn"], r["kind"]) for r in rows] == [(0, 1, "video"), (0, 2, "moment")]
    assert rows[0]["hit"] is True and rows[1]["iou"] == pytest.approx(0.8)
    assert rows[1]["hit"] == {0.3: True, 0.5: True, 0.7: True}
    missing = score_turns(preds[:1], raw)  # no record for turn 1: a miss, still counted
    assert missing[0]["found"] is False and missing[0]["hit"] is False
    table = per_turn_table(missing)
    assert table == {1: {"video": {"R@1": 0.0, "n": 1}},
                     2: {"moment": {"R@1 IoU=0.3": 100.0, "R@1 IoU=0.5": 100.0, "R@1 IoU=0.7": 100.0, "n": 1}}}


def test_a_truth_without_a_span_is_a_clear_error():
    raw = [dialogue([("when?", "somewhere in the middle", [3, 4])])]
    with pytest.raises(ValueError, match="no Xs-Ys span"):
        score_turns([{"user_q": "when?", "output": "3s-4s"}], raw)
