"""Query material the native engine's tests share: real annotation queries and their Chinese
versions, and the Python path's rows for them (the encoder and the lexical channel's matches)."""
from __future__ import annotations

import numpy as np

from ivcr_engine.index import Index
from ivcr_engine.index.layout import LEXICAL

from .reference_lexical import LexicalSearch

from ..models.test_multilingual_encoder import TRANSLATED, annotation_queries


def texts(shared_data, n: int = 60) -> list[str]:
    return annotation_queries(shared_data, n) + list(TRANSLATED) + list(TRANSLATED.values()) + [
        "a bird", "城市夜景", "bicycles", "subtitle", "people talking"]


def line_queries(index: Index, n: int = 6) -> list[str]:
    """Queries quoting the index's own timed lines (speech, subtitles, on-screen text), so the
    lexical channel finds words."""
    rows = index.store.db.execute("SELECT DISTINCT text FROM texts WHERE length(text) > 3 ORDER BY rowid").fetchall()
    picks = rows[:: max(1, len(rows) // n)][:n]
    return [r[0] for r in picks]


def python_rows(index: Index, batch: list[str]) -> tuple[dict[str, np.ndarray], list[tuple]]:
    """The Python path's dense rows for the texts, and each text's lexical matches in the native
    ABI's form: (video ref -> best coverage, line rowid -> coverage)."""
    rows = index.encode_queries(batch)
    dense = {c: v for c, v in rows.items() if c != LEXICAL}
    lex = LexicalSearch(index.store)  # the Python path's, the engine's reference
    ref_of = {int(v["id"]): r for r, v in enumerate(index.videos)}
    return dense, [python_matches(lex, ref_of, t) for t in batch]


def python_matches(lex: LexicalSearch, ref_of: dict, text: str) -> tuple[dict, dict]:
    """One text's lexical matches by the Python search, in the form the ABI takes them (video ref
    -> best coverage, line rowid -> coverage); ``ref_of``: video id -> ref."""
    if not lex.ready:
        return {}, {}
    videos = {ref_of[v]: c for v, c in lex.videos(text).items() if v in ref_of}
    return videos, dict(lex.find(text).coverage)
