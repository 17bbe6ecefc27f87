"""What a dialogue remembers between turns, and the typed reply of one turn. Both serialise to
plain JSON (for servers and for replaying a session)."""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field

import numpy as np

from ..index.protocol import (
    Moment,  # one moment type from the index up (video = its ref)
)


@dataclass
class Candidate:
    video: int          # the video's ref
    path: str
    score: float


@dataclass
class SessionState:
    candidates: list[Candidate] = field(default_factory=list)  # the current ten, best first
    selected: int | None = None      # ref of the video under discussion
    moment: Moment | None = None     # the last moment shown
    moment_query: str = ""           # what that moment answered
    excluded: list[int] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)  # video-search queries, oldest first
    # when set, video searches rank only these, and "video N" is the position in this list (IVCR's
    # pre-ranked ten, in the dataset's order; -1 keeps the place of a candidate the index lacks)
    pool: list[int] | None = None
    turns: list[dict] = field(default_factory=list)   # {"user": ..., "reply": ...}
    # the picture the current search was given (its visual query row, pack_row), searched with
    # ``query``; a new text search drops it
    image: str | None = None

    @property
    def query(self) -> str:
        """The composed search query: refinements add to the last query rather than replace it."""
        return " ".join(self.queries[-3:]).strip()

    def candidate_number(self, video: int) -> int | None:
        """The "video N" a reply names ``video`` by: its place in the given pool, else in the
        candidates (best first)."""
        numbered = self.numbered()
        return numbered.index(video) + 1 if video in numbered else None

    def numbered(self) -> list[int]:
        """The videos "video 1", "video 2", ... name, in that order (refs; -1 for a gap)."""
        return list(self.pool) if self.pool is not None else [c.video for c in self.candidates]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SessionState":
        return cls(candidates=[Candidate(**c) for c in d.get("candidates", [])], selected=d.get("selected"),
                   moment=Moment(**d["moment"]) if d.get("moment") else None, moment_query=d.get("moment_query", ""),
                   excluded=list(d.get("excluded", [])), queries=list(d.get("queries", [])), pool=d.get("pool"),
                   turns=list(d.get("turns", [])), image=d.get("image"))


def pack_row(row: np.ndarray) -> str:
    """A (1, d) query row as JSON-safe text: float16, base64 (a 1280-d row is 3.4 kB; cosines
    move by < 1e-3)."""
    return base64.b64encode(np.asarray(row, np.float16).tobytes()).decode("ascii")


def unpack_row(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float16).astype(np.float32)[None, :]


@dataclass
class Outcome:
    """What a turn's handler found, before it is worded: the responder's input.
    ``kind``: "video", "moment", "whole" (the whole video), "nothing", "chat" or "help"."""
    kind: str = ""
    video: int | None = None           # the video answered with (kind "video")
    moment: Moment | None = None       # the moment answered with ("moment", "whole", a scene's match)
    why: str = ""                      # the engine's note: what it assumed, re-ranked or could not do
    evidence: list[str] = field(default_factory=list)  # worded evidence lines, best first
    lang: str = "en"                   # the turn's language (the reply's)
    user: str = ""                     # the turn as typed (a language model answers chit-chat from it)

    @classmethod
    def of(cls, outcome: "Outcome | dict") -> "Outcome":
        """An Outcome from itself or from a mapping with its fields (a hand-written caller's)."""
        return outcome if isinstance(outcome, cls) else cls(**dict(outcome))


@dataclass
class Reply:
    intent: str
    text: str
    # what the reply answers with: "video", "moment", "whole" (the whole video), "nothing",
    # "chat" or "help"
    kind: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    moment: Moment | None = None
    video: int | None = None          # the selected video, if any
    evidence: list[str] = field(default_factory=list)
    assumed: str | None = None
    timings: dict = field(default_factory=dict)  # seconds: encode, search, span, respond, total
    # each candidate's best moment for the turn's search text, in the candidates' order (None: no
    # moment), when the engine is asked for them (Engine(candidate_moments=True): ivcr serve)
    candidate_moments: list[Moment | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
