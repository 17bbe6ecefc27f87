"""The reference for the engine's lexical channel (csrc/engine/lexicon.cpp, lexical.cpp), kept from
the Python path it replaced (ivcr_engine/index/lexical.py): how well a video's timed text lines
contain the query's words.

A query's words (words.query_words) are *terms*; a term matches a line when the word, or one of
its dictionary translations (lexicon.py: "日食" -> "solar eclipse" | "eclipse"), occurs in it
after FTS5's tokenizer (case, diacritics, English stemming: "boats" matches "boat").

What a term is worth is its rarity in its language (words.rarity: jieba's counts for Chinese,
Zipf's law over wordninja's frequency list for English), the IDF of BM25 taken from the
language instead of the index, so that every shard of an index weighs a word alike. A line's
score is its *coverage*: the weight of the terms it holds over the weight of the query's, 0..1
whatever the corpus or the query length, so the ranking adds it to the dense scores with one
weight (layout.LEXICAL, ranking.py).

Lines are found without reading a common word's doclist: a term in more of this index's lines
than ``cap`` (0.5 % of them, within COMMON_MIN..COMMON_MAX; counted by FTS5 up to that many,
once per word and snapshot) finds no line and credits none, but still weighs in the query's
total. FTS5 intersects the rarest ``MAX_TERMS`` of the others (all of them, then all but one;
one at a time only for queries of one or two terms), best first, each step reading at most
``LINES_READ`` lines until that many are found (exact coverage for up to three terms; with
four, lines holding two of them are not read). Among lines of equal coverage the first by rowid
are read: a word in more than LINES_READ lines gives a bonus to the videos of those alone (the
dense channels rank the rest). A query's lines and their coverage are kept per text (``KEPT``),
so the moments of the same turn read no more.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from itertools import combinations

from ivcr_engine.index import lexicon, words

LINES_READ = 64      # lines a query's lexical candidates come from (reading one costs ~5 us at 600k lines)
MAX_TERMS = 4        # rarest terms that find lines (a sentence's other words are the dense channels')
COMMON_SHARE = 0.005  # a term in more lines than this share (within COMMON_MIN..COMMON_MAX) finds none:
COMMON_MIN = 50       # intersecting two words of 30k lines each took 6-13 ms at 600k lines, and
COMMON_MAX = 1000     # counting a word's lines reads its doclist up to the cap (~0.2 ms at 1000)
KEPT = 256           # texts whose lines a search keeps


@dataclass(frozen=True)
class Term:
    word: str                 # the query's word
    forms: tuple[str, ...]    # it and its translations, each an FTS5 phrase's text

    @property
    def match(self) -> str:
        return "(" + " OR ".join(words.phrase(f) for f in self.forms) + ")"


def query_terms(text: str) -> list[Term]:
    """The terms of a query (empty for a query of stop words only)."""
    return [Term(w, tuple(dict.fromkeys((w,) + lexicon.translations(w)))) for w in words.query_words(text)]


@dataclass
class Found:
    """A query's lexical lines: rowid -> coverage (0..1] and rowid -> video id."""
    coverage: dict[int, float]
    video_of: dict[int, int]


class LexicalSearch:
    """Lexical search over one store snapshot's lines; ``ready`` is False (and every answer
    empty) when its table is not usable (a read-only index made before the table existed)."""

    def __init__(self, store):
        self.store = store
        self.ready = store.lexical_ready()
        self._cap: int | None = None  # counted on the first query, not at open or refresh
        self._common: dict[str, bool] = {}  # term match -> in more than ``cap`` lines
        self._kept: OrderedDict[str, Found] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, text: str) -> Found:
        """The query's lexical lines (kept per text)."""
        with self._lock:
            got = self._kept.get(text)
            if got is not None:
                self._kept.move_to_end(text)
                return got
        got = self._find(text) if self.ready else Found({}, {})
        with self._lock:
            self._kept[text] = got
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        return got

    def forget(self, counts: bool = False) -> None:
        """Drop the kept texts' lines, and with ``counts`` the words' (benchmarks time a search
        that reads them)."""
        with self._lock:
            self._kept.clear()
            if counts:
                self._common.clear()

    @property
    def cap(self) -> int:
        if self._cap is None:
            self._cap = min(COMMON_MAX, max(COMMON_MIN, int(COMMON_SHARE * self.store.line_total())))
        return self._cap

    def _is_common(self, term: Term) -> bool:
        common = self._common.get(term.match)
        if common is None:
            common = self.store.count_matching(term.match, self.cap + 1) > self.cap
            with self._lock:
                self._common[term.match] = common
        return common

    def videos(self, text: str) -> dict[int, float]:
        """Video id -> its best line's coverage, for the videos with a matching line."""
        found = self.find(text)
        best: dict[int, float] = {}
        for r, c in found.coverage.items():
            v = found.video_of[r]
            best[v] = max(best.get(v, 0.0), c)
        return best

    def match_lines(self, text: str, rowids) -> dict[int, float]:
        """The coverage of the given lines that are among the query's lexical lines."""
        cov = self.find(text).coverage
        return {int(r): cov[int(r)] for r in rowids if int(r) in cov}

    def _find(self, text: str) -> Found:
        terms = [(words.rarity(t.word), t) for t in query_terms(text)]
        coverage: dict[int, float] = {}
        video_of: dict[int, int] = {}
        if not terms:
            return Found(coverage, video_of)
        total = sum(w for w, _ in terms)
        used = sorted(((w, t) for w, t in terms if not self._is_common(t)), key=lambda x: -x[0])[:MAX_TERMS]
        if not used:
            return Found(coverage, video_of)
        idx = range(len(used))
        steps = [tuple(idx)]
        if len(used) > 1:
            steps += [c for c in combinations(idx, len(used) - 1)] if len(used) > 2 else [(i,) for i in idx]
        steps = sorted(steps, key=lambda s: -sum(used[i][0] for i in s))  # best possible coverage first
        for step in steps:
            if len(coverage) >= LINES_READ:
                break
            c = sum(used[i][0] for i in step) / total
            match = " AND ".join(used[i][1].match for i in step)
            for rowid, vid in self.store.lines_with(match, LINES_READ - len(coverage)):
                if rowid not in coverage:  # found by a better step already
                    coverage[rowid], video_of[rowid] = c, vid
        return Found(coverage, video_of)
