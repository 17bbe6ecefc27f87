"""Readers never see a half-written index: one writer process commits videos (and tombstones)
one at a time while reader processes search in a bounded loop, some keeping one Index open and
refreshing it, some opening a fresh Index per search like `ivcr search` does."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ivcr_engine.index import Index, IndexStore

from . import concurrency_worker as worker

N_VIDEOS = 60
MODES = ("refresh", "refresh", "open")


def _run(tmp_path: Path, modes: tuple[str, ...]) -> list[dict]:
    root = tmp_path / "idx"
    worker.create(root)
    script = str(Path(worker.__file__))
    outs = [tmp_path / f"reader{i}.json" for i in range(len(modes))]
    readers = [subprocess.Popen([sys.executable, script, "reader", str(root), mode, str(out)])
               for mode, out in zip(modes, outs)]
    writer = subprocess.Popen([sys.executable, script, "writer", str(root), str(N_VIDEOS), str(len(modes))])
    assert writer.wait(timeout=300) == 0
    for r in readers:
        assert r.wait(timeout=300) == 0
    live = N_VIDEOS - len(range(5, N_VIDEOS, 5))
    got = []
    for mode, out in zip(modes, outs):
        stats = json.loads(out.read_text())
        assert stats["failures"] == [], stats["failures"][:2]
        assert stats["inconsistent"] == [], stats["inconsistent"][:5]
        assert stats["searches"] >= 2 and stats["hits"] > 0
        assert stats["final_live"] == live
        if mode != "open":
            assert stats["refreshed"] >= 1
        got.append(stats)
    return got


def test_searches_during_an_ingest_are_all_consistent(tmp_path):
    _run(tmp_path, MODES)


def test_one_index_refreshed_beside_eight_searching_threads(tmp_path):
    """What `ivcr serve` does with the index it answers from: one Index, searched from 8 threads
    (dense, and dense with the lexical channel)
    while a ninth refreshes it in a loop and another process commits videos and tombstones."""
    stats, = _run(tmp_path, ("threads",))
    assert stats["searches"] >= 2 * worker.SEARCH_THREADS
    assert stats["lexical_hits"] > 0  # the lexical channel's lines were found and shown


def test_refresh_maps_new_videos_and_removals_only_when_committed(tmp_path):
    root = tmp_path / "idx"
    worker.create(root)
    index = Index.open(root)
    assert len(index) == 1 and index.refresh() is False
    with IndexStore(root) as s:
        # rows appended but never committed (a writer killed before its SQLite commit): invisible
        with open(s.vector_path("visual"), "ab") as f:
            f.write(worker.video_vectors(9).astype(np.float16).tobytes())
        assert index.refresh() is False and index.corpus.rows == len(worker.video_vectors(0))
        a = s.add_video(worker.record(1))
    assert index.refresh() is True
    assert len(index) == 2 and index.corpus.rows == len(worker.video_vectors(0)) + len(worker.video_vectors(1))
    assert {h.video_id for h in index.search(worker.query(), k=5, weights={"visual": 1.0})} == {1, a}
    with IndexStore(root) as s:
        s.remove_videos([a])
    assert index.refresh() is True and len(index) == 1
    assert [h.video_id for h in index.search(worker.query(), k=5, weights={"visual": 1.0})] == [1]
    assert index.refresh() is False


def test_the_refresh_frees_the_view_it_replaced_not_the_search_still_on_it(tmp_path, monkeypatch):
    """Freeing a view (its engine handle closed, its rows unmapped) took ~0.45 s at 1M clips, and
    whichever thread dropped it last paid: in a server, the search that was running on the old
    view when a commit came in. refresh() waits for such searches, then frees the view itself."""
    import threading
    import time

    from ivcr_engine.native import NativeIndex

    root = tmp_path / "idx"
    worker.create(root)
    index = Index.open(root)
    closed = []
    close = NativeIndex.close

    def recording_close(self):
        if self._h:
            closed.append(threading.current_thread().name)
        close(self)

    monkeypatch.setattr(NativeIndex, "close", recording_close)
    held = index._view  # what a search running on the current view holds
    with IndexStore(root) as s:
        s.add_video(worker.record(1))
    refresher = threading.Thread(target=index.refresh, name="refresher")
    refresher.start()
    while index._view is held:  # swapped in: the refresh now waits for `held` to be let go
        time.sleep(0.001)
    assert refresher.is_alive() and closed == []
    del held  # the search ends
    refresher.join(timeout=30)
    assert not refresher.is_alive() and closed == ["refresher"]
    assert len(index) == 2
    index.close()
