"""The lexical channel: how well a video's timed text lines contain the query's words.

A query's words (words.query_words) are *terms*; a term matches a line when the word, or one of
its dictionary translations (lexicon.py: "日食" -> "solar eclipse" | "eclipse"), occurs in it
after FTS5's tokenizer (case, diacritics, English stemming: "boats" matches "boat"). One FTS5
query finds the best ``LINES_READ`` lines by BM25 for any of the terms; then each term is tested
on those lines alone (one more FTS5 query per term, over their rowids). A line's lexical score is
its *coverage*: the share of the query's terms it contains, weighted by each term's rarity among
the lines read (a term in every line read tells little). A video's score is its best line's.

Coverage is on a fixed 0..1 scale whatever the corpus size or query length, so the ranking can add
it to the dense scores with one weight (ranking.py, LEXICAL_WEIGHT); BM25 only chooses which lines
are read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import lexicon, words

LINES_READ = 400  # best BM25 lines a query reads (their videos are the lexical candidates)


@dataclass(frozen=True)
class Term:
    word: str                 # the query's word
    forms: tuple[str, ...]    # it and its translations, each an FTS5 phrase's text

    @property
    def match(self) -> str:
        return "(" + " OR ".join(words.phrase(f) for f in self.forms) + ")"


def query_terms(text: str) -> list[Term]:
    """The terms of a query (empty for a query of stop words only)."""
    return [Term(w, tuple(dict.fromkeys([w] + lexicon.translations(w)))) for w in words.query_words(text)]


@dataclass
class LineMatches:
    """The lexical match of some lines to one query: rowid -> coverage (0..1] and the query words
    each contains (for marking them where the line is shown). Lines absent matched nothing."""
    coverage: dict[int, float]
    words: dict[int, list[str]]


class LexicalSearch:
    """Lexical search over one store; empty answers when its table is not usable (a read-only
    index made before the table existed): the channel is then absent, and says so (``ready``)."""

    def __init__(self, store):
        self.store = store
        self.ready = store.lexical_ready()

    def lines(self, text: str) -> tuple[LineMatches, dict[int, int]]:
        """The best lines for ``text`` with their coverage, and each line's video id."""
        terms = query_terms(text) if self.ready else []
        if not terms:
            return LineMatches({}, {}), {}
        found = self.store.lexical_lines(" OR ".join(t.match for t in terms), LINES_READ)
        video_of = {r: v for r, v, _ in found}
        return self._cover(terms, list(video_of)), video_of

    def match_lines(self, text: str, rowids) -> LineMatches:
        """The coverage of given lines (a moment's, for its evidence and edges)."""
        terms = query_terms(text) if self.ready else []
        if not terms or not rowids:
            return LineMatches({}, {})
        return self._cover(terms, [int(r) for r in rowids])

    def videos(self, text: str) -> dict[int, float]:
        """Video id -> its best line's coverage, for the videos with a matching line."""
        matches, video_of = self.lines(text)
        best: dict[int, float] = {}
        for r, c in matches.coverage.items():
            v = video_of[r]
            best[v] = max(best.get(v, 0.0), c)
        return best

    def _cover(self, terms: list[Term], rowids: list[int]) -> LineMatches:
        has = [self.store.lines_matching(t.match, rowids) for t in terms]
        n = max(len(rowids), 1)
        # rarity among the lines read: a term in all of them weighs log(2), a term in one ~log(n)
        weight = [math.log(1.0 + n / (1.0 + len(h))) if h else math.log(1.0 + n) for h in has]
        total = sum(weight)
        coverage: dict[int, float] = {}
        matched: dict[int, list[str]] = {}
        for t, h, w in zip(terms, has, weight):
            for r in h:
                coverage[r] = coverage.get(r, 0.0) + w / total
                matched.setdefault(r, []).append(t.word)
        return LineMatches(coverage, matched)
