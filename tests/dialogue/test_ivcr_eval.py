"""The IVCR-200K loader, answer parser and evaluator on dialogues written here in that schema,
over the shared-video index (the dataset itself is not available)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_video_ids_match_with_or_without_extension_or_folder(shared_index, tmp_path):
    """IVCR-200K files may name videos "kitchen", "kitchen.mp4" or "videos/kitchen.mp4"."""
    data = json.loads(write_dialogues(tmp_path / "d.json").read_text())
    for n, d in enumerate(data):
        for msg in d["conversations"]:
            if "video_id" in msg:
                msg["video_id"] = f"videos/{msg['video_id']}.mp4" if n == 0 else msg["video_id"] + ".mp4"
            if "candidate_videos" in msg:
                msg["candidate_videos"] = [c + ".mp4" for c in msg["candidate_videos"]]
    (tmp_path / "ext.json").write_text(json.dumps(data))
    engine = Engine.open(shared_index[0])
    plain = evaluate(engine, load_ivcr200k(tmp_path / "d.json"))
    with_ext = evaluate(engine, load_ivcr200k(tmp_path / "ext.json"))
    assert with_ext == plain and with_ext["video"]["R@1"] == 100.0


def test_missing_videos_are_an_error_or_skipped_and_counted(shared_index, tmp_path):
    data = json.loads(write_dialogues(tmp_path / "d.json").read_text())
    data[1]["conversations"][1]["video_id"] = "not_in_the_index.mp4"
    (tmp_path / "m.json").write_text(json.dumps(data))
    engine = Engine.open(shared_index[0])
    with pytest.raises(ValueError, match="not_in_the_index.mp4"):
        evaluate(engine, load_ivcr200k(tmp_path / "m.json"))
    result = evaluate(engine, load_ivcr200k(tmp_path / "m.json"), skip_missing=True)
    assert result["skipped_dialogues"] == 1 and result["missing_videos"] == ["not_in_the_index.mp4"]
    assert result["counts"] == {"video": 1, "moment": 1}  # the first dialogue is still scored
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "eval", "ivcr200k", str(tmp_path / "m.json"),
                          "--index", str(shared_index[0])], capture_output=True, text=True)
    assert out.returncode != 0 and "not_in_the_index.mp4" in out.stderr and "Traceback" not in out.stderr


def test_predictions_file_is_what_the_authors_scorer_reads(shared_index, tmp_path):
    """One {"user_q", "output"} record per turn, the turn text as the dataset has it; the
    "video N" / "Xs-Ys" that a parser finds in each output is exactly the engine's answer."""
    path = write_dialogues(tmp_path / "d.json")
    dialogues = load_ivcr200k(path)
    engine = Engine.open(shared_index[0])
    preds: list = []
    evaluate(engine, dialogues, predictions=preds)
    raw = [m["value"] for d in json.loads(path.read_text()) for m in d["conversations"] if m["from"] == "human"]
    assert [p["user_q"] for p in preds] == raw and set(preds[0]) == {"user_q", "output"}
    # replay the same turns and compare each reply's state with what the parser reads back
    for dlg in dialogues:
        session = engine.session()
        for turn in dlg.turns:
            by_key = {Path(engine.index.video(r).path).stem: r for r in range(engine.index.num_refs())}
            session.state.pool = [by_key[c] for c in turn.candidates] or None
            if not turn.is_video:
                session.state.selected = by_key[turn.video_id]
            reply = session.ask(turn.question)
            out = next(p["output"] for p in preds if p["user_q"].replace("<video>", "").strip() == turn.question)
            assert out == reply.text
            video, span = parse_ivcr_answer(out)
            if turn.is_video:
                assert video == [c.video for c in reply.candidates].index(reply.video) + 1
            else:
                assert span == (round(reply.moment.start, 1), round(reply.moment.end, 1))
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "eval", "ivcr200k", str(path), "--index",
                          str(shared_index[0]), "--predictions", str(tmp_path / "p.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "p.json").read_text()) == preds
