"""IVCR-200K evaluation: run the engine turn by turn over dialogues in the IVCR-200K JSON schema
and report video R@1 (and R@5/R@10 over the candidates), moment R@1 at IoU 0.3/0.5/0.7, and a
per-turn table, under either protocol (PROTOCOLS).

Schema: a list of dialogues ``{"split", "type", "conversations": [...]}``; conversations alternate
``{"from": "human", "value": ...}`` and ``{"from": "gpt", "value": ..., "video_id": ...,
"candidate_videos": [...], "gt_se": [start, end]}`` where ``gt_se == [-1, -1]`` marks a video
retrieval turn, and the answer's "video N" is the place of ``video_id`` in ``candidate_videos``.
Like the reference protocol, history is teacher-forced by default (before a turn the session
looks at the ground-truth video of the previous answer). ``ivcr200k_authors`` scores the same
answers by the dataset authors' own rules and names every turn where the two disagree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from .metrics import temporal_iou

IOUS = (0.3, 0.5, 0.7)


@dataclass
class IvcrTurn:
    question: str
    video_id: str
    gt_se: tuple[float, float]
    candidates: list[str] = field(default_factory=list)
    answer: str = ""
    user_q: str = ""  # the human turn exactly as the dataset has it (the scorer's records keep it)

    @property
    def is_video(self) -> bool:
        return self.gt_se[0] < 0 and self.gt_se[1] < 0


@dataclass
class IvcrDialogue:
    split: str
    type: object  # a string, or the dataset's list of type codes
    turns: list[IvcrTurn]
    raw: dict = field(default_factory=dict)  # the dialogue as the file has it (the authors' scorer reads it)


def load_ivcr200k(path: str | Path) -> list[IvcrDialogue]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of dialogues")
    out = []
    for n, d in enumerate(data):
        conv = d.get("conversations")
        if not isinstance(conv, list):
            raise ValueError(f"{path}: dialogue {n} has no conversations list")
        turns, question = [], None
        for msg in conv:
            who = msg.get("from")
            if who == "human":
                raw = str(msg.get("value", ""))
                question = raw.replace("<video>", "").strip()
            elif who == "gpt":
                if question is None:
                    raise ValueError(f"{path}: dialogue {n}: an answer without a question")
                gt = msg.get("gt_se", [-1, -1])
                turns.append(IvcrTurn(question, str(msg.get("video_id", "")), (float(gt[0]), float(gt[1])),
                                      [str(c) for c in msg.get("candidate_videos", []) or []], str(msg.get("value", "")),
                                      raw))
                question = None
        out.append(IvcrDialogue(str(d.get("split", "")), d.get("type", ""), turns, d))
    return out


VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".m4v", ".flv", ".ts", ".wmv", ".3gp"}


def video_key(name: str) -> str:
    """The name a video is matched by: its file name without folders or a video extension, so
    "kitchen", "kitchen.mp4" and "videos/kitchen.mp4" are one video (dataset ids and index paths
    agree). Other dots stay: "clip.v2" is not "clip"."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    return path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name


PROTOCOLS = {
    "candidates": "candidates given: a video turn ranks the sample's own candidate list and answers "
                  "with the position in it (the paper's protocol; --predictions follows it)",
    "index": "whole index: a video turn ranks every video of the index and answers with its own rank",
}


def evaluate(engine, dialogues: list[IvcrDialogue], teacher_forced: bool = True, skip_missing: bool = False,
             predictions: list | None = None, protocol: str = "candidates", turns: list | None = None) -> dict:
    """Scores of ``engine`` (a dialogue Engine) on the dialogues; see the module doc.

    ``protocol`` (see PROTOCOLS): "candidates" sets each video turn's pool to the sample's
    ``candidate_videos`` in the dataset's order, so the reply's "video N" is the position in that
    list, as the dataset's answers are; "index" ranks the whole index. Moment turns are asked
    about the ground-truth video either way.

    A turn scores what the reply answered: a video turn hits when the reply names the right video
    (a video or whole-video answer), a moment turn by the IoU of the span as the reply writes it
    (0.1 s) when it is in the right video. A dialogue whose ground-truth videos are not in the
    index cannot be scored: that is an error naming them, or with ``skip_missing`` the dialogue is
    skipped and counted in the report. ``predictions``, when given, receives one ``{"user_q",
    "output"}`` record per turn: the format the IVCR-200K authors' scorer reads. ``turns``, when
    given, receives one row per scored turn (``compare_with_authors`` reads them)."""
    from ..dialogue.state import SessionState

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    index = engine.index
    infos = (index.video(r) for r in range(index.num_refs()))
    by_key = {video_key(v.path): v.ref for v in infos if not v.removed}
    missing = sorted({t.video_id for d in dialogues for t in d.turns if video_key(t.video_id) not in by_key})
    if missing and not skip_missing:
        raise ValueError(f"{len(missing)} ground-truth videos of these dialogues are not in the index "
                         f"(e.g. {', '.join(missing[:10])}); index them, or pass skip_missing "
                         "(ivcr eval --skip-missing) to score the other dialogues")
    records = []  # (turn number, kind, hit flags)
    skipped = 0
    for d_no, dlg in enumerate(dialogues):
        if any(video_key(t.video_id) not in by_key for t in dlg.turns):
            skipped += 1
            continue
        session = engine.session(SessionState())
        prev_video = None
        for t_no, turn in enumerate(dlg.turns, 1):
            gt_video = by_key[video_key(turn.video_id)]
            st = session.state
            # the dataset's list, positions kept (-1: a candidate this index lacks)
            st.pool = ([by_key.get(video_key(c), -1) for c in turn.candidates] or None) if protocol == "candidates" else None
            if teacher_forced and prev_video is not None:
                st.selected, st.moment = prev_video, None
            if not turn.is_video:
                st.selected = gt_video  # a moment turn is asked about the ground-truth video
            reply = session.ask(turn.question)
            if predictions is not None:
                predictions.append({"user_q": turn.user_q or turn.question, "output": reply.text})
            row = {"dialogue": d_no, "turn": t_no, "kind": "video" if turn.is_video else "moment",
                   "answered": reply.kind, "output": reply.text, "gt_video": gt_video}
            if turn.is_video:
                named = reply.kind in ("video", "whole") and reply.video == gt_video
                ranked = [c.video for c in reply.candidates] if reply.kind in ("video", "whole") else []
                rank = ranked.index(gt_video) + 1 if gt_video in ranked else None
                flags = {"R@1": named, "R@5": bool(rank and rank <= 5), "R@10": bool(rank and rank <= 10)}
                row["number"] = st.candidate_number(gt_video)
            else:
                m = reply.moment
                row["moment_video"] = m.video if m else None
                iou = float(temporal_iou([[round(m.start, 1), round(m.end, 1)]], [list(turn.gt_se)])[0, 0]) \
                    if (m and m.video == gt_video) else 0.0
                flags = {f"R@1 IoU={x}": iou >= x for x in IOUS} | {"mIoU": iou}
            records.append((t_no, row["kind"], flags))
            if turns is not None:
                turns.append(row | {"flags": flags})
            prev_video = gt_video
    out = summarise(records, set(missing))
    out["protocol"] = protocol
    if skipped:
        out["skipped_dialogues"] = skipped
    return out


def summarise(records: list, missing: set | None = None) -> dict:
    def mean(rows, key):
        vals = [float(r[key]) for r in rows]
        return round(100 * float(np.mean(vals)), 2) if vals else None

    out = {"video": {}, "moment": {}, "per_turn": {}, "counts": {}}
    for kind in ("video", "moment"):
        rows = [r for _, k, r in records if k == kind]
        out["counts"][kind] = len(rows)
        if rows:
            out[kind] = {key: mean(rows, key) for key in rows[0]}
    for t_no in sorted({t for t, _, _ in records}):
        out["per_turn"][t_no] = {}
        for kind in ("video", "moment"):
            rows = [r for t, k, r in records if t == t_no and k == kind]
            if rows:
                out["per_turn"][t_no][kind] = {key: mean(rows, key) for key in rows[0]} | {"n": len(rows)}
    if missing:
        out["missing_videos"] = sorted(missing)
    return out


def _result_lines(result: dict) -> list[str]:
    lines = [f"video turns {result['counts'].get('video', 0)}: " + ", ".join(f"{k} {v}" for k, v in result["video"].items()),
             f"moment turns {result['counts'].get('moment', 0)}: " + ", ".join(f"{k} {v}" for k, v in result["moment"].items()),
             "per turn:"]
    lines += _per_turn_lines(result["per_turn"])
    if result.get("missing_videos"):
        lines.append(f"skipped {result.get('skipped_dialogues', 0)} dialogues whose videos are not in the index: "
                     f"{', '.join(result['missing_videos'][:10])}")
    return lines


def _per_turn_lines(per_turn: dict) -> list[str]:
    return [f"  turn {t} {kind:<6} " + ", ".join(f"{k} {v}" for k, v in vals.items())
            for t, kinds in per_turn.items() for kind, vals in kinds.items()]


def format_report(report: dict) -> str:
    """``ivcr eval ivcr200k``'s report: each protocol's scores, the authors' scorer on the
    candidates-given answers, and the turns the two scorers judge differently."""
    lines = []
    for protocol, result in report["protocols"].items():
        lines += [f"== {PROTOCOLS[protocol]}", *_result_lines(result), ""]
    authors = report.get("authors_scorer")
    if authors is not None:
        lines += ["== the IVCR-200K authors' scoring rules (metrics/eval.py) on the candidates-given answers",
                  *_per_turn_lines(authors["per_turn"])]
        diffs = authors["differences"]
        lines.append(f"turns the two scorers judge differently: {len(diffs)}")
        lines += [f"  dialogue {d['dialogue']} turn {d['turn']}: {d['why']}" for d in diffs]
    if report.get("predictions"):
        lines.append(f"predictions written to {report['predictions']['file']} (candidates given: what the authors' "
                     "scorer reads)")
    return "\n".join(lines)
