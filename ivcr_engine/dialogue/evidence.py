"""Which evidence a reply shows: the lines that match the query, best first, and confident
concepts; not every line that happens to overlap the moment.

On-screen text is read off every frame, so a moment's lines include timecodes ("00:00:01.000"),
counters ("135") and other readings that say nothing about why the moment matches; shown first,
they pushed the sentence that mattered out of the reply. A line is shown when the index scored it
above what an unrelated sentence reaches (``Evidence.line_match > 0``) and it is not a
low-information reading, unless the query itself contains it ("episode 12" keeps a "12").
``Index.evidence`` without a query still gives every line, for callers that want them all.
"""
from __future__ import annotations

import math
import re

from ..index.protocol import Evidence

MAX_LINES = 3          # lines a reply shows (the template shows this many evidence items)
CONCEPT_MIN = 0.25     # a concept class is shown when the frame classifier gave it at least this
# (the readings beside a confident one are 0.01-0.2 here: "stage 0.19" on a cleanroom)
# timecodes, clocks, dates, lone numbers and counters: digits with separators, signs and units
_NUMBERISH = re.compile(r"^[\d\s.,:;/\\%+\-#()'\"x×]+$", re.I)
_TOKEN = re.compile(r"\w+", re.UNICODE)


def low_information(text: str) -> bool:
    """A reading that says nothing by itself: only digits and separators (timecodes, counters,
    dates), or a scrap of at most three characters with fewer than two letters ("A", "b7"; CJK
    characters count as letters)."""
    t = text.strip()
    return not t or bool(_NUMBERISH.match(t)) or (len(t) <= 3 and sum(ch.isalpha() for ch in t) < 2)


def asked_for(text: str, query: str) -> bool:
    """Whether the query contains every word of the line ("135" in "what happens at 135")."""
    words = {w.lower() for w in _TOKEN.findall(text)}
    return bool(words) and words <= {w.lower() for w in _TOKEN.findall(query)}


def supporting_lines(ev: Evidence, query: str = "") -> list[tuple[str, float, float, str]]:
    """The lines of ``ev`` worth showing, best first: with the index's match scores, those above
    zero; without (no text query, e.g. "something like this scene"), every informative line in
    time order. Low-information readings go unless the query asks for them; at most MAX_LINES."""
    keep = [i for i, (_, _, _, text) in enumerate(ev.lines) if not low_information(text) or asked_for(text, query)]
    if ev.line_match:
        scored = [i for i in keep if not math.isnan(ev.line_match[i]) and ev.line_match[i] > 0.0]
        keep = sorted(scored, key=lambda i: (-ev.line_match[i], i))
    return [ev.lines[i] for i in keep[:MAX_LINES]]


def confident_concepts(ev: Evidence) -> str:
    """The first clip's concept classes the classifier was sure of ("african grey parrot 0.47"),
    or "" when none reached CONCEPT_MIN."""
    if not ev.concepts:
        return ""
    kept = []
    for part in ev.concepts[0].split(","):
        name, _, p = part.strip().rpartition(" ")
        try:
            if float(p) >= CONCEPT_MIN:
                kept.append(part.strip())
        except ValueError:  # no score after the name: shown as it is
            kept.append(part.strip())
    return ", ".join(kept)
