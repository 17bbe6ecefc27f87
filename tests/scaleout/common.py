"""What the scale-out tests compare: hits and dialogue transcripts of two indexes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

QUERIES = ["a parrot on a perch", "a space telescope in a clean room", "a dog walking in a park",
           "a cartoon rabbit in a forest", "people riding bikes", "a man on the phone in a car"]
SCRIPT = ["find videos of a parrot", "the second one", "when does it move?", "earlier", "not this one",
          "find something like this scene", "find videos about a space telescope",
          "when do they mention the largest cleanrooms in the world?", "the part after that",
          "show me the whole video"]


def assert_same_hits(one, other, k: int = 8) -> None:
    """Same videos (by path), same order, same scores (float tolerance), same moments."""
    for q in QUERIES:
        a, b = one.search(q, k=k), other.search(q, k=k)
        assert [h.path for h in a] == [h.path for h in b], q
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
        assert [(h.start, h.end) for h in a] == [(h.start, h.end) for h in b], q
        assert [h.evidence.lines for h in a] == [h.evidence.lines for h in b], q


def transcript(engine) -> list[str]:
    """A scripted dialogue as text: each reply, its candidates' file names and its moment."""
    s = engine.session()
    out = []
    for turn in SCRIPT:
        r = s.ask(turn)
        names = [Path(c.path).name for c in r.candidates]
        moment = None if r.moment is None else (round(r.moment.start, 2), round(r.moment.end, 2))
        out.append(f"{turn} -> [{r.intent}] {r.text} | {names} | {moment} | {r.evidence}")
    return out
