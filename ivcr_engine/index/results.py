"""A one-shot search's results (``Hit``) and the formats they are written in: QVHighlights and
TVR prediction lines (for the official scorers) and the CLI's JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .protocol import Evidence


@dataclass
class Hit:
    rank: int
    video_id: int | str  # the index's id of the video ("s1:3" in a sharded index)
    video_index: int     # its ref (position in the search corpus; global in a sharded index)
    path: str
    start: float
    end: float
    score: float          # the video's retrieval score (fused channels, aggregated over clips)
    moment_score: float   # the span scorer's score of this moment inside the video
    evidence: Evidence
    aliases: list[str] = field(default_factory=list)  # other paths with the same content


def to_qvhighlights(qid, query: str, hits: Sequence[Hit], vid: str | None = None) -> dict:
    """A QVHighlights-style prediction line: moments of the top video as pred_relevant_windows."""
    top = [h for h in hits if vid is None or Path(h.path).stem == vid]
    return {"qid": qid, "query": query, "vid": Path(top[0].path).stem if top else vid,
            "pred_relevant_windows": [[round(h.start, 2), round(h.end, 2), round(h.score, 4)] for h in top]}


def to_tvr(query_id, hits: Sequence[Hit]) -> dict:
    """A TVR-style (video corpus moment retrieval) prediction: [video, start, end, score] rows."""
    return {"desc_id": query_id,
            "predictions": [[Path(h.path).stem, round(h.start, 2), round(h.end, 2), round(h.score, 4)] for h in hits]}


def hits_to_json(hits: Sequence[Hit]) -> str:
    return json.dumps([{"video_id": h.video_id, "path": h.path, "aliases": h.aliases, "start": round(h.start, 2), "end": round(h.end, 2),
                        "score": round(h.score, 4), "rank": h.rank,
                        "evidence": {"lines": [list(l) for l in h.evidence.lines], "concepts": h.evidence.concepts,
                                     # each line's match to the query (> 0 matches; null: not scored)
                                     "line_match": [None if np.isnan(x) else round(x, 4) for x in h.evidence.line_match]}}
                       for h in hits], ensure_ascii=False, indent=2)
