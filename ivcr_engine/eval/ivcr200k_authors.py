"""The IVCR-200K authors' scoring rules, written here from their published scorer (the dataset's
``metrics/eval.py``, function ``cal_multi_reslut``), so that a predictions file can be scored as
they score it and compared turn by turn with ``ivcr200k.evaluate``. No code of theirs is used;
these are the rules as that script applies them:

- a prediction is found by its question: the first record whose ``user_q`` equals the human
  turn's text exactly (``<video>`` tag included). A turn with no record counts as a miss; two
  turns with the same text both read the first record.
- the turn's kind comes from the ground truth: ``gt_se == [-1, -1]`` is video retrieval.
- video retrieval: the first ``video N`` (N = 0..10, "video" then whitespace, any case) in the
  prediction must equal the first one in the ground-truth answer text; two missing numbers are
  equal, so they count as a hit.
- moment retrieval: the truth is the first ``Xs-Ys`` in the ground-truth *answer text* (not
  ``gt_se``); the prediction's span is the first ``A - B`` (an ``s`` after either number
  optional, spaces around the dash allowed) in its lower-cased text; failing that, the first
  number of each sentence (split at ``!``, ``?`` and newlines) paired in order; failing that,
  ``H:MM:SS`` times paired the same way; failing all, ``[0, 0]``. A reversed pair is put in
  order. IoU is the overlap over the hull of the two spans, and R@1 counts IoU >= 0.3/0.5/0.7.
- turns are numbered by the human message's position (turn k is the k-th human message), and
  only dialogues with ``split == "test"`` and ``type != [0]`` are scored. Nothing is skipped
  within them (the script's second, whole-file scorer ``cal_reslut`` drops the first sample of
  each kind; the per-turn table, the paper's, does not).
"""
from __future__ import annotations

import re
from collections import defaultdict

from .ivcr200k import IOUS

_VIDEO_N = re.compile(r"\bvideo\s+(10|[0-9])\b", re.I)
_TRUTH_SPAN = re.compile(r"(\d+(?:\.\d+)?)s-(\d+(?:\.\d+)?)s")
_PRED_SPAN = re.compile(r"(\d+\.*\d*)s?\s*-\s*(\d+\.*\d*)s?")
_NUMBER = re.compile(r"\b(\d+\.\d+\b|\b\d+)\b")
_CLOCK = re.compile(r"\b(\d{1,2}:\d{2}:\d{2})\b")
# the reference system's prompt carries this example span; the scorer removes it before parsing
_PROMPT_EXAMPLE = "a specific example is : 20.8 - 30.0 seconds"


def video_number(text: str) -> int | None:
    m = _VIDEO_N.search(text)
    return int(m.group(1)) if m else None


def truth_span(text: str) -> tuple[float, float] | None:
    """The first strict ``Xs-Ys`` of a ground-truth answer."""
    m = _TRUTH_SPAN.search(text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def _pairs(values: list[float]) -> list[tuple[float, float]]:
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def predicted_span(text: str) -> tuple[float, float]:
    """The span the authors' parser reads from a prediction (see the module doc)."""
    t = re.sub(r"\.{2,}", ".", text.lower().replace(_PROMPT_EXAMPLE, ""))
    found = [(float(a), float(b)) for a, b in _PRED_SPAN.findall(t)]
    sentences = re.split(r"[!?\n]", t)
    if not found:
        firsts = [float(m.group(1)) for m in (_NUMBER.search(s) for s in sentences) if m]
        found = _pairs(firsts)
    if not found:
        clocks = []
        for s in sentences:
            m = _CLOCK.search(s)
            if m:
                h, mi, se = (int(x) for x in m.group(1).split(":"))
                clocks.append(float(h * 3600 + mi * 60 + se))
        found = _pairs(clocks)
    if not found:
        return (0.0, 0.0)
    a, b = found[0]
    return (a, b) if b > a else (b, a)


def hull_iou(truth: tuple[float, float], pred: tuple[float, float]) -> float:
    """Overlap over the hull of the two spans (equal to IoU wherever they overlap)."""
    inter = max(min(truth[1], pred[1]) - max(truth[0], pred[0]), 0.0)
    hull = max(truth[1], pred[1]) - min(truth[0], pred[0])
    return inter / hull if hull > 0 else 0.0


def is_scored(dialogue: dict) -> bool:
    """Whether the authors' scorer reads this dialogue."""
    return dialogue.get("split") == "test" and dialogue.get("type") != [0]


def score_turns(predictions: list[dict], raw: list[dict]) -> list[dict]:
    """One row per scored turn, in file order: ``{"dialogue", "turn", "kind", "user_q", "found",
    "hit"}`` (video: ``hit`` is a bool; moment: ``iou``, and ``hit`` maps each IoU threshold to a
    bool)."""
    first_output: dict[str, str] = {}
    for p in predictions:
        first_output.setdefault(p["user_q"], p["output"])
    rows = []
    for d_no, d in enumerate(raw):
        if not is_scored(d):
            continue
        conv = d["conversations"]
        for i, msg in enumerate(conv):
            if msg.get("from") != "human" or i + 1 >= len(conv):
                continue
            answer = conv[i + 1]
            out = first_output.get(msg["value"])
            row = {"dialogue": d_no, "turn": (i + 2) // 2, "user_q": msg["value"], "found": out is not None}
            if list(answer.get("gt_se", [-1, -1])) == [-1, -1]:
                row |= {"kind": "video", "hit": out is not None and video_number(out) == video_number(answer["value"])}
            else:
                truth = truth_span(answer["value"])
                if truth is None:
                    raise ValueError(f"dialogue {d_no}, turn {row['turn']}: the ground-truth answer has no "
                                     f"Xs-Ys span for the authors' scorer to read: {answer['value']!r}")
                iou = hull_iou(truth, predicted_span(out)) if out is not None else 0.0
                row |= {"kind": "moment", "iou": iou, "hit": {x: iou >= x for x in IOUS}}
            rows.append(row)
    return rows


def per_turn_table(rows: list[dict]) -> dict[int, dict]:
    """``{turn: {"video": {"R@1", "n"}, "moment": {"R@1 IoU=x"..., "n"}}}`` in %, as the authors'
    table prints it."""
    groups: dict[int, dict[str, list]] = defaultdict(lambda: {"video": [], "moment": []})
    for r in rows:
        groups[r["turn"]][r["kind"]].append(r)
    out: dict[int, dict] = {}
    for turn in sorted(groups):
        out[turn] = {}
        vids, moms = groups[turn]["video"], groups[turn]["moment"]
        if vids:
            out[turn]["video"] = {"R@1": round(100 * sum(r["hit"] for r in vids) / len(vids), 2), "n": len(vids)}
        if moms:
            out[turn]["moment"] = {f"R@1 IoU={x}": round(100 * sum(r["hit"][x] for r in moms) / len(moms), 2)
                                   for x in IOUS} | {"n": len(moms)}
    return out


def compare_with_authors(ours: list[dict], theirs: list[dict], raw: list[dict]) -> list[dict]:
    """Turns the two scorers judge differently, each with why: ``ours`` are ``evaluate(...,
    turns=...)`` rows, ``theirs`` ``score_turns`` rows, ``raw`` the dataset file. A difference
    that none of the known reasons explains says "unexplained" (the parity test requires none)."""
    mine = {(r["dialogue"], r["turn"]): r for r in ours}
    first_q: dict[str, tuple[int, int]] = {}
    for r in theirs:
        first_q.setdefault(r["user_q"], (r["dialogue"], r["turn"]))
    out = []
    for r in theirs:
        key = (r["dialogue"], r["turn"])
        o = mine.get(key)
        if o is None:
            out.append({"dialogue": key[0], "turn": key[1], "why": "not scored here (its videos are not in the "
                        "index): the authors' scorer counts it as a miss"})
            continue
        ours_hit = o["flags"]["R@1"] if r["kind"] == "video" else {x: o["flags"][f"R@1 IoU={x}"] for x in IOUS}
        if ours_hit == r["hit"]:
            continue
        out.append({"dialogue": key[0], "turn": key[1], "kind": r["kind"], "ours": ours_hit, "theirs": r["hit"],
                    "why": _why(o, r, raw[key[0]], first_q[r["user_q"]] != key)})
    for o in ours:  # dialogues the authors' scorer leaves out
        if not is_scored(raw[o["dialogue"]]):
            out.append({"dialogue": o["dialogue"], "turn": o["turn"], "why": "not read by the authors' scorer "
                        "(split is not \"test\", or type is [0])"})
    return out


def _why(o: dict, r: dict, dialogue: dict, repeated: bool) -> str:
    if repeated:
        return "the same question text as an earlier turn: the authors' scorer reads that turn's answer"
    answer = [m for m in dialogue["conversations"] if m.get("from") == "gpt"][r["turn"] - 1]
    if r["kind"] == "video":
        if o.get("number") is not None and video_number(answer["value"]) != o["number"]:
            return (f"the ground truth says video {video_number(answer['value'])}, but its video_id is candidate "
                    f"{o['number']} in candidate_videos")
        if o["answered"] not in ("video", "whole"):
            return f"answered as {o['answered']}, not with a video"
        return "unexplained"
    if o["answered"] not in ("moment", "whole") or o.get("moment_video") is None:
        return f"answered as {o['answered']}, without a moment: the authors' parser read a span elsewhere in the reply"
    if o["moment_video"] != o["gt_video"]:
        return "the moment is in another video than the ground truth's (the authors' scorer reads only the span)"
    gt, text = [float(x) for x in answer.get("gt_se", [])], truth_span(answer["value"])
    if text is None or abs(gt[0] - text[0]) > 1e-6 or abs(gt[1] - text[1]) > 1e-6:
        return f"the truth differs: gt_se {gt} here, {text} in the answer text the authors' scorer reads"
    return "unexplained"
