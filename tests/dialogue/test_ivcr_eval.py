"""The IVCR-200K loader, answer parser and evaluator on dialogues written here in that schema,
over the shared-video index (the dataset itself is not available)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ivcr_engine.dialogue import Engine, parse_ivcr_answer
from ivcr_engine.eval.ivcr200k import evaluate, load_ivcr200k, summarise

ALL = ["nasa_13013", "cockatoo", "bikes", "dog_walk", "bigbuckbunny", "cityCC0", "movie-hello", "carphone_pristine"]


def write_dialogues(path):
    dialogues = [
        {"split": "test", "type": "video_then_moment", "conversations": [
            {"from": "human", "value": "<video>\nFind the video about the Webb space telescope."},
            {"from": "gpt", "value": "The given query happens in video 1.", "video_id": "nasa_13013",
             "candidate_videos": ALL, "gt_se": [-1, -1]},
            {"from": "human", "value": "When do they say it is one of the largest cleanrooms in the world?"},
            {"from": "gpt", "value": "The given query happens 4.3s-8.4s.", "video_id": "nasa_13013", "gt_se": [4.26, 8.35]},
        ]},
        {"split": "test", "type": "video", "conversations": [
            {"from": "human", "value": "Find the video of a parrot."},
            {"from": "gpt", "value": "video 2", "video_id": "cockatoo", "candidate_videos": ALL[::-1], "gt_se": [-1, -1]},
        ]},
    ]
    path.write_text(json.dumps(dialogues))
    return path


def test_loader_reads_the_schema(tmp_path):
    d = load_ivcr200k(write_dialogues(tmp_path / "d.json"))
    assert len(d) == 2 and len(d[0].turns) == 2
    t0, t1 = d[0].turns
    assert t0.is_video and not t1.is_video and t1.gt_se == (4.26, 8.35)
    assert t0.question.startswith("Find the video") and "<video>" not in t0.question
    assert t0.candidates == ALL
    (tmp_path / "bad.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="list of dialogues"):
        load_ivcr200k(tmp_path / "bad.json")


@pytest.mark.parametrize("text,video,span", [
    ("The intent is video retrieval. The given query happens in video 3.", 3, None),
    ("The given query happens 12.5s-20.0s.", None, (12.5, 20.0)),
    ("it happens 20s - 12.5s", None, (12.5, 20.0)),
    ("Video 10 at 3.0s to 7.5s", 10, (3.0, 7.5)),
    ("no idea", None, None),
])
def test_answer_parser(text, video, span):
    assert parse_ivcr_answer(text) == (video, span)


def test_summary_metrics_by_hand():
    records = [(1, "video", {"R@1": True, "R@5": True, "R@10": True}),
               (1, "video", {"R@1": False, "R@5": True, "R@10": True}),
               (2, "moment", {"R@1 IoU=0.3": True, "R@1 IoU=0.5": False, "R@1 IoU=0.7": False, "mIoU": 0.4})]
    out = summarise(records)
    assert out["video"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0}
    assert out["moment"]["R@1 IoU=0.3"] == 100.0 and out["moment"]["mIoU"] == 40.0
    assert out["per_turn"][1]["video"]["n"] == 2 and out["per_turn"][2]["moment"]["n"] == 1


def test_evaluate_runs_turn_by_turn(shared_index, tmp_path):
    engine = Engine.open(shared_index[0])
    result = evaluate(engine, load_ivcr200k(write_dialogues(tmp_path / "d.json")))
    assert result["counts"] == {"video": 2, "moment": 1}
    assert result["video"]["R@1"] == 100.0
    assert result["moment"]["R@1 IoU=0.3"] == 100.0
    assert set(result["per_turn"]) == {1, 2}
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "eval", "ivcr200k", str(tmp_path / "d.json"),
                          "--index", str(shared_index[0]), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["video"]["R@1"] == 100.0
