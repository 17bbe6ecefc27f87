"""Moments at sub-clip precision on generated clips with sentences at known times: a query about
one sentence gets that sentence's own line edges (speech through Whisper, or a sidecar .srt),
IoU >= 0.7 with when it is audible; queries about what is seen keep the clip grid; indexes whose
lines have no vectors keep working on the grid."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine.eval import temporal_iou
from ivcr_engine.eval.spoken import make_spoken_video, tools_missing
from ivcr_engine.index import Index, Ingestor, IndexStore
from ivcr_engine.index.layout import DEFAULT_WEIGHTS, LEXICAL
from ivcr_engine.models import prepare_models

SENTENCES = [(1.3, "Today we are going to bake a loaf of fresh bread."),
             (9.7, "The old motorcycle needs a new battery under the seat."),
             (17.1, "Fishing boats are tied up along the stone pier.")]
QUERIES = ["bake a loaf of fresh bread", "a new battery for the motorbike", "boats moored at the harbour"]


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(temporal_iou([a], [b])[0, 0])


def on_grid(t: float, index: Index, video: int) -> bool:
    rows = index.mapped.clip_rows(video)
    edges = np.concatenate([index.clip_start[rows], index.clip_end[rows]])
    return bool(np.isclose(edges, t, atol=1e-9).any())


def build(tmp_path, name: str, audio: bool, srt: bool):
    if tools_missing():
        pytest.skip(f"needs {tools_missing()} (make installs them)")
    prepare_models()
    folder = tmp_path / "videos"
    folder.mkdir()
    truth = make_spoken_video(folder / name, SENTENCES, 26.0, audio=audio, srt=srt)
    ing = Ingestor(tmp_path / "index", speech=audio)
    report = ing.run([folder], progress=False)
    ing.close()
    assert report.added and not report.failed, report.failed
    return tmp_path / "index", truth


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    return build(tmp_path_factory.mktemp("spoken"), "spoken.mp4", audio=True, srt=False)


@pytest.fixture(scope="module")
def subtitled(tmp_path_factory):
    return build(tmp_path_factory.mktemp("subtitled"), "subtitled.mp4", audio=False, srt=True)


def check_snapped(root, truth, source: str) -> None:
    index, grid = Index.open(root), Index.open(root, moment_edges="grid")
    lines = [l for l in index.store.texts(index.videos[0]["id"]) if l[0] == source]
    assert len(lines) == len(SENTENCES), lines
    for query, sentence, line in zip(QUERIES, truth, lines):
        want = (line[1], line[2])  # the stored line's exact edges
        hit = index.search(query, k=1)[0]
        assert (hit.start, hit.end) == want, (query, hit.start, hit.end, line)
        assert iou((hit.start, hit.end), (sentence.start, sentence.end)) >= 0.7, (query, hit, sentence)
        assert [l[3] for l in hit.evidence.lines] == [line[3]]  # evidence: the lines under the snapped moment
        # the dialogue's path: the best moment inside the chosen video
        m = index.best_moments(index.encode_query(query), 0, top=1)[0]
        assert (m.start, m.end) == want
        # the same search on the grid: the clip edges around it (what snapping refines)
        g = grid.search(query, k=1)[0]
        assert on_grid(g.start, grid, 0) and on_grid(g.end, grid, 0) and g.start <= line[1] + 2 and g.end >= line[2] - 2


def test_spoken_sentences_get_their_line_edges(spoken):
    check_snapped(*spoken, source="speech")


def test_subtitle_sidecar_cues_give_their_edges(subtitled):
    root, truth = subtitled
    with IndexStore(root) as store:
        cues = store.texts(1)
    assert [t for _, a, b, _ in cues for t in (a, b)] == pytest.approx([t for s in truth for t in (s.start, s.end)],
                                                                      abs=1e-3)
    check_snapped(root, truth, source="subtitle")


def test_queries_about_what_is_seen_keep_the_grid(spoken):
    index = Index.open(spoken[0])
    m = index.best_moments({"visual": index.moment_vector(0, 4.0, 6.0)}, 0, {"visual": 1.0}, top=1)[0]
    assert on_grid(m.start, index, 0) and on_grid(m.end, index, 0)
    hit = index.search("a colourful test pattern with bars", k=1)[0]  # matches no sentence
    assert on_grid(hit.start, index, 0) and on_grid(hit.end, index, 0)


def test_a_paraphrase_below_the_match_level_still_gets_its_sentence_not_the_grid(spoken):
    """Issue 23: "ships at the quay" matches no line well enough to snap the span it falls in,
    but its sentence stands out among the video's lines, so the moment is that sentence."""
    index = Index.open(spoken[0])
    line = [l for l in index.store.texts(index.videos[0]["id"]) if l[0] == "speech"][2]
    m = index.best_moments(index.encode_query("ships at the quay"), 0, top=1)[0]
    assert (m.start, m.end) == (line[1], line[2])


def test_a_window_bounds_the_snapped_moment(spoken):
    index = Index.open(spoken[0])
    q = index.encode_query(QUERIES[1])
    line = index.store.texts(index.videos[0]["id"])[1]  # the second sentence (Whisper may mishear a word)
    inside = index.best_moments(q, 0, window=(line[1] + 0.5, float("inf")), top=1)
    assert inside and inside[0].start >= line[1] + 0.5 - 1e-9


def test_lines_without_vectors_keep_the_grid(spoken, tmp_path):
    """An index written before lines had vectors (no texts.vec column): it opens, gains the
    column, and its moments stay on the grid, unless a line holds the query's words (the
    lexical channel needs no vectors: the moment is then that line)."""
    import shutil
    import sqlite3

    root = tmp_path / "old"
    shutil.copytree(spoken[0], root)
    with sqlite3.connect(root / "meta.sqlite") as db:
        db.execute("ALTER TABLE texts DROP COLUMN vec")
    index = Index.open(root)
    no_words = {c: w for c, w in DEFAULT_WEIGHTS.items() if c != LEXICAL}
    hit = index.search(QUERIES[0], k=1, weights=no_words)[0]
    assert on_grid(hit.start, index, 0) and on_grid(hit.end, index, 0)
    assert hit.evidence.lines  # the lines are still there, as evidence
    hit = index.search(QUERIES[0], k=1)[0]
    assert any((hit.start, hit.end) == (a, b) for _, a, b, _ in hit.evidence.lines)


def test_line_vectors_of_another_text_model_keep_the_grid(spoken, tmp_path):
    """Text channels re-embedded by another model leave the lines' vectors in the old space (same
    width, wrong meaning): moments must not snap by them. An older index that gains lines with
    vectors from the same model learns it on the next ingest."""
    import shutil

    from ivcr_engine.index.ingest import prepare_store

    root = tmp_path / "other"
    shutil.copytree(spoken[0], root)
    with IndexStore(root) as store:
        settings = store.settings()
        assert settings["line_text_model"] == settings["text_model"] == "text_me5_small"
        store.set_settings({**settings, "text_model": "text_minilm_l6"})  # as if re-embedded without the lines
    index = Index.open(root)
    hit = index.search(QUERIES[0], k=1)[0]
    assert on_grid(hit.start, index, 0) and on_grid(hit.end, index, 0)
    with IndexStore(root) as store:
        old = {k: v for k, v in settings.items() if k != "line_text_model"}
        store.set_settings(old)
        prepare_store(store, {**old, "line_text_model": old["text_model"]}, [])
        assert store.settings() == settings
        store.set_settings(old)
        prepare_store(store, {**old, "line_text_model": "text_other_model"}, [])  # another model: not recorded
        assert store.settings() == old


def test_a_keyword_finds_its_sentence_through_the_lexical_channel(spoken):
    """Real speech (espeak-ng, transcribed by Whisper at ingest): a bare keyword, English or a
    Chinese one over the English speech (through its dictionary translation), places the moment
    on the sentence that says it; with the lexical channel off the Chinese one has no line to
    snap to (its dense match to any line is below chance)."""
    root, truth = spoken
    index = Index.open(root)
    for query, sentence in (("loaf", truth[0]), ("码头", truth[2])):
        m = index.best_moments(index.encode_query(query), 0, top=1)[0]
        assert iou((m.start, m.end), (sentence.start, sentence.end)) >= 0.7, (query, m, sentence)
        ev = index.evidence(0, m.start, m.end, index.encode_query(query))
        assert max(ev.line_match) > 0  # the cited line matches (lexically)
    no_words = {c: w for c, w in DEFAULT_WEIGHTS.items() if c != LEXICAL}
    ev = index.evidence(0, 0.0, 26.0, index.encode_query("码头"), weights=no_words)
    assert all(x <= 0 for x in ev.line_match)
