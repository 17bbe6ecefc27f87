"""The lexical channel in the engine (csrc/engine/lexicon.cpp, lexical.cpp) against the Python path
it replaced (reference_lexical.py): a query text's words, their translations and the lines that
hold them, found natively from the tables `ivcr models prepare` exports, give the same matches, so
the same ranking, moments and evidence; ivcr_search (text in) uses them as the Python path does."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from ivcr_engine.native import NativeIndex, Unsupported, lib

from .native_queries import line_queries, python_rows, texts
from .reference_lexical import LexicalSearch, query_terms

IVCR_INVALID_ARGUMENT = 1  # include/ivcr.h
EDGES = ["bird 鸟", "the the the", "café au lait", "ÉCOLE Straße", "日食 eclipse NASA", "面团 bread",
         "x" * 300, "光合作用", "𠀀𠀁 rare characters", "a_b snake_case 42", "Ünïcödé", "  spaced   out  "]


def _batch(py, shared_data):
    quotes = line_queries(py, 16)
    return texts(shared_data, 60) + quotes + [q.upper() for q in quotes] + EDGES


def test_the_engine_finds_the_lines_the_python_path_found(both, shared_data):
    """Same matches, so the same ranking (refs and scores to the bit) and the same moments with
    the same line matches, for annotation queries in English and Chinese, the index's own lines
    (as said and shouted) and awkward texts."""
    py, nat = both
    batch = _batch(py, shared_data)
    dense, matches = python_rows(py, batch)
    found = [i for i, (_, lines) in enumerate(matches) if lines]
    assert len(found) >= 20  # the comparison below covers real matches, not only empty ones
    for i, text in enumerate(batch):
        row = {c: v[i:i + 1] for c, v in dense.items()}
        times: list = []
        want = nat.rank_vectors(row, 8, lexical=[matches[i]], times=times)
        got = nat.rank_vectors(row, 8, lexical=[text], times=times)
        # the words are looked up (ivcr_results_stage_ms "words") only when the text is handed over
        assert times[0]["words"] == 0 and times[1]["words"] > 0
        np.testing.assert_array_equal(got[0], want[0], err_msg=text)
        np.testing.assert_array_equal(got[1], want[1], err_msg=text)
        videos = [int(r) for r in want[0][0] if r >= 0][:3]
        a = nat.moments(row, videos, lexical=matches[i])
        b = nat.moments(row, videos, lexical=text)
        assert [(h.ref, h.start, h.end, h.moment_score, h.lines, h.line_match) for h in b] == \
               [(h.ref, h.start, h.end, h.moment_score, h.lines, h.line_match) for h in a], text


def test_the_python_index_ranks_with_the_engines_lexical_channel(both, shared_data):
    """``Index`` hands the engine its query text; its answers equal the reference path's (the
    Python lexical search's matches handed over), for queries quoting the index's lines."""
    py, nat = both
    batch = line_queries(py, 16)
    dense, matches = python_rows(py, batch)
    rows = py.encode_queries(batch)
    refs, scores = py.rank_videos(rows, 8)
    for i in range(len(batch)):
        row = {c: v[i:i + 1] for c, v in dense.items()}
        want = nat.rank_vectors(row, 8, lexical=[matches[i]])
        np.testing.assert_array_equal(refs[i], want[0][0])
        np.testing.assert_array_equal(scores[i], want[1][0])


def test_query_words_follow_the_python_definition():
    """The reference's terms, as the engine's tables give them (jieba's cut without its HMM,
    Python's \\w and lowercase, stop words, translations); the engine's own are held to these
    through the matches above."""
    assert [t.word for t in query_terms("The boats of 光合作用 and Straße")] == ["boats", "光合作用", "straße"]
    assert "eclipse" in query_terms("日食")[0].forms
    assert query_terms("café")[0].forms == ("café",)  # a Latin word with accents has no translations


def test_ivcr_search_uses_the_lexical_channel(both):
    """Text in, natively: a query quoting a line finds the line (its hit's moment shows the match),
    and turning the channel's weight off changes the scores of the videos that hold the words."""
    py, nat = both
    quotes = line_queries(py, 8)
    lexical = LexicalSearch(py.store)
    on = nat.search(quotes, 5)
    off = nat.search(quotes, 5, weights={"lexical": 0.0})
    moved = 0
    for q, a, b in zip(quotes, on, off):
        if lexical.find(q).coverage:
            assert any(m > 0 for h in a for m in h.line_match if m == m), q
            moved += [h.score for h in a] != [h.score for h in b]
    assert moved >= 1


def test_refusals_say_why(both, tmp_path):
    py, nat = both
    other = NativeIndex(py.store.root, model_dir=tmp_path)  # no tables prepared there
    row = {c: v[:1] for c, v in python_rows(py, ["a bird"])[0].items()}
    with pytest.raises(Unsupported, match="ivcr models prepare"):
        other.rank_vectors(row, 3, lexical=["a bird"])
    assert other.rank_vectors(row, 3)[0].shape == (1, 3)  # dense only still answers
    other.close()
    q = ctypes.c_void_p()
    assert lib().ivcr_queries_new(1, ctypes.byref(q)) == 0
    try:
        assert lib().ivcr_queries_set_lexical_text(q, 0, b"\xff\xfe bad") == IVCR_INVALID_ARGUMENT
        assert b"UTF-8" in lib().ivcr_last_error()
        assert lib().ivcr_queries_set_lexical_text(q, 1, b"a") == IVCR_INVALID_ARGUMENT  # row out of range
    finally:
        lib().ivcr_queries_free(q)
