"""The writer leaves a large index's first-stage copies ready (Index.prepare_search, called at the
end of every ingest run): a host on libivcr alone cannot build them, and without them it scans
every row exactly. The shared videos' index stands in for a large one (the two-stage threshold
lowered to one clip, a shortlist of 4 of its 8 videos)."""
from __future__ import annotations

import shutil

import pytest

from ivcr_engine.index import Index, Ingestor, ranking
from ivcr_engine.native import NativeIndex

STAGE = (1, 4, 8_000, 0.95, 8)  # the engine's staged sizes: from 1 clip on, 4 videos re-ranked exactly


@pytest.fixture
def fresh_copy(shared_index, tmp_path, monkeypatch):
    """The shared index copied without any first-stage file, large enough for a first stage."""
    root = tmp_path / "index"
    shutil.copytree(shared_index[0], root, ignore=shutil.ignore_patterns("first.*", ".first.*"))
    monkeypatch.setattr(ranking, "TWO_STAGE_MIN_ROWS", 1)
    monkeypatch.setattr(ranking, "SHORTLIST", STAGE[1])
    return root


def _paths(root, visual_row):
    """The path the engine's own text search (``ivcr_search``) and a visual search took."""
    text, visual = [], []
    with NativeIndex(root) as nat:
        nat.search(["a parrot on a perch"], k=3, stage=STAGE, paths=text)
        nat.rank_vectors({"visual": visual_row}, 3, {"visual": 1.0}, stage=STAGE, paths=visual)
    return text + visual


def test_an_ingest_run_leaves_the_copies_the_engine_s_own_searches_scan(fresh_copy):
    index = Index(fresh_copy)
    row = index.moment_vector(0, 0.0, float("inf"), "visual").reshape(1, -1)
    index.close()
    assert _paths(fresh_copy, row) == ["exact", "exact"]  # no copies: every row scanned exactly
    ing = Ingestor(fresh_copy)
    try:
        report = ing.run([], progress=False)  # nothing to add: the copies of what is there
    finally:
        ing.close()
    assert report.stage_seconds["search copies"] > 0
    names = sorted(p.name for p in (fresh_copy / "vectors").glob("first.*.values.npy"))
    assert any(n.startswith("first.text-concept1-") for n in names) and any(n.startswith("first.visual.") for n in names)
    assert _paths(fresh_copy, row) == ["copies", "copies"]  # found by the fold the engine itself computes
    # and the engine's own search ranks over them as Python's search does
    index = Index(fresh_copy)
    try:
        refs, _ = index.rank_videos(index.encode_queries(["a parrot on a perch"]), 3)
    finally:
        index.close()
    with NativeIndex(fresh_copy) as nat:
        got = nat.search(["a parrot on a perch"], k=3, stage=STAGE, moments=0, evidence=False)[0]
    assert [h.ref for h in got] == refs[0].tolist()


def test_prepare_search_is_a_no_op_below_the_threshold_and_when_ready(fresh_copy, monkeypatch):
    def files():
        return {p.name: p.stat().st_mtime_ns for p in (fresh_copy / "vectors").glob("first.*")}

    index = Index(fresh_copy)
    tags = index.prepare_search()
    index.close()
    assert tags[0].startswith("text-concept1-") and tags[-1] == "visual"
    built = files()
    index = Index(fresh_copy)  # a new process's view: it finds the copies and writes nothing
    try:
        assert index.prepare_search() == tags and files() == built
        monkeypatch.setattr(ranking, "TWO_STAGE_MIN_ROWS", index.corpus.rows + 1)
        assert index.prepare_search() == []
    finally:
        index.close()


def test_a_copy_that_cannot_be_built_leaves_the_run_a_note_not_an_error(fresh_copy, monkeypatch):
    def fail(self):
        raise MemoryError("no room for the copy")

    monkeypatch.setattr(Index, "prepare_search", fail)
    ing = Ingestor(fresh_copy)
    try:
        report = ing.run([], progress=False)
    finally:
        ing.close()
    assert report.exit_code() == 0 and "search copies" not in report.stage_seconds
    assert any("were not prepared (MemoryError: no room for the copy)" in n for n in report.notes), report.notes


def _commit_copy_of_video(root, ref: int, index: Index) -> None:
    """A new video whose rows are video ``ref``'s, a little changed (nothing prepares its copies)."""
    import numpy as np

    from ivcr_engine.index import IndexStore, VideoRecord

    rows = index.mapped.clip_rows(ref, 0.0, float("inf"))
    rng = np.random.default_rng(ref)
    vectors = {}
    for c, data in index.channels.items():
        v = np.asarray(data[rows], np.float32) + 0.01 * rng.standard_normal((len(rows), data.shape[1]), dtype=np.float32)
        vectors[c] = v / np.linalg.norm(v, axis=1, keepdims=True)
    times = np.stack([np.arange(len(rows)) * 2.0, np.arange(len(rows)) * 2.0 + 2.0], 1)
    with IndexStore(root) as store:
        store.add_video(VideoRecord(f"/new/{ref}.mp4", f"new-{ref}", 2.0 * len(rows), times, vectors))


def test_a_server_s_index_readies_its_searches_at_open_and_before_a_refresh_swaps_views(fresh_copy):
    """A prefaulted index (`ivcr serve`'s) builds its copies and has the engine load them when it
    opens, and again in refresh() while searches still run on the old view: the first search
    (after a commit: seconds at 1M clips where the writer had not grown the copies) no longer pays."""
    index = Index(fresh_copy, prefault=True)
    try:
        assert sum(index.locked_bytes()) > 0  # readied at open too: the engine has loaded the folded text stage
        text = index.encode_queries(["a parrot on a perch"])
        index.rank_videos(text, 3)
        _commit_copy_of_video(fresh_copy, 0, index)
        index.ranking_paths = paths = []
        assert index.refresh()
        rows = index.corpus.rows
        names = {p.name for p in (fresh_copy / "vectors").glob(f"first.*.{rows}.values.npy")}
        assert any(n.startswith("first.text-concept1-") for n in names) and f"first.visual.{rows}.values.npy" in names
        assert paths == []  # the warm-up's rankings are not the caller's
        locked, unlocked = index.locked_bytes()
        assert locked + unlocked > 0  # the engine has loaded the folded text stage (and locked it where it may)
        refs, _ = index.rank_videos(text, 3)
        assert paths == ["copies"]
    finally:
        index.close()
    fresh = Index(fresh_copy)  # the same answer from an index opened afresh
    try:
        assert fresh.rank_videos(fresh.encode_queries(["a parrot on a perch"]), 3)[0].tolist() == refs.tolist()
    finally:
        fresh.close()
