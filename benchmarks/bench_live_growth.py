"""A live 1M-clip index taking in commits (what `ivcr serve` does when ingest commits beside it),
same run, same index, one video committed before each measure:

- the first turn after a commit: the first-stage copies and lists grown with their kept encodings
  (first_stage.py, inverted_lists.py) against fitted again, as every commit cost before. A "turn"
  is ``Index.refresh()`` (which, on a prefaulted index, readies the new view's usual searches
  before swapping it in) then the first text ranking and the first "something like this" one;
- searches running on another thread all along, as a server's are, while the refresh maps the
  commit: their longest latency with the new view readied and the old one freed by the refresh,
  against the refresh before (the first searches on the new view made its copies resident, and
  the search that held the old view last freed it).

The encoder-e5 corpus (synthetic_index.py, 5.4 GB) is copied into .cache/bench/live_growth and
removed afterwards.

``pytest benchmarks/bench_live_growth.py --benchmark-enable -p no:randomly -s``
"""
from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from ivcr_engine.index import Index, IndexStore, VideoRecord, first_stage, single
from ivcr_engine.models import prepare_models

from synthetic_index import CACHE, open_index

TABLE = "first turn after a commit of one video, 1M clips (encoder-e5), s"


@pytest.fixture(scope="module")
def live(shared_data):
    prepare_models()
    root = CACHE / "live_growth"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(open_index("encoder-e5", shared_data), root)
    index = Index(root, prefault=True)
    yield index
    index.close()
    shutil.rmtree(root, ignore_errors=True)


def commit_one(index: Index, n: int) -> None:
    """A video of 10 clips: an indexed video's rows, a little changed."""
    rng = np.random.default_rng(n)
    ref = int(rng.integers(index.num_refs()))
    rows = index.mapped.clip_rows(ref, 0.0, 1e9)
    vectors = {}
    for c, data in index.channels.items():
        v = np.asarray(data[rows], np.float32) + 0.01 * rng.standard_normal((len(rows), data.shape[1])).astype(np.float32)
        vectors[c] = v / np.linalg.norm(v, axis=1, keepdims=True)
    times = np.stack([np.arange(len(rows)) * 2.0, np.arange(len(rows)) * 2.0 + 2.0], 1)
    with IndexStore(index.store.root) as store:
        store.add_video(VideoRecord(f"/live/{n}.mp4", f"live-{n}", 2.0 * len(rows), times, vectors))


def first_turn(index: Index) -> dict[str, float]:
    """Seconds for the refresh, the first text ranking and the first visual one, then a second
    (warm) text ranking."""
    text = {c: v for c, v in index.encode_queries(["a man rides a bike down a hill"]).items() if c != "lexical"}
    out = {}
    t = time.perf_counter()
    assert index.refresh()
    out["refresh"] = time.perf_counter() - t
    t = time.perf_counter()
    index.rank_videos(text, 10)
    out["text ranking"] = time.perf_counter() - t
    t = time.perf_counter()
    index.rank_videos({"visual": index.moment_vector(0, 0.0, 6.0)}, 10, {"visual": 1.0})
    out["visual ranking"] = time.perf_counter() - t
    t = time.perf_counter()
    index.rank_videos(text, 10)
    out["warm text ranking"] = time.perf_counter() - t
    return out


def test_first_turn_after_a_commit(live, benchmark, record, monkeypatch):
    index = live
    # the copies as the corpus has them may predate growth: fitted once, untimed, so both timed
    # turns start from copies that keep their encodings
    commit_one(index, 0)
    monkeypatch.setattr(first_stage, "GROW_LIMIT", 0.0)  # every copy fitted again: what a commit cost before
    first_turn(index)
    commit_one(index, 1)
    refit = first_turn(index)
    monkeypatch.undo()
    commit_one(index, 2)
    grown = benchmark.pedantic(first_turn, args=(index,), rounds=1, iterations=1)
    for step in refit:
        record.put(TABLE, step, "fitted again (before)", round(refit[step], 3))
        record.put(TABLE, step, "grown (after)", round(grown[step], 3))
        record.put(TABLE, step, "speed-up", f"{refit[step] / max(grown[step], 1e-9):.1f}x")
    total = lambda d: sum(v for k, v in d.items() if k != "warm text ranking")  # noqa: E731
    record.put(TABLE, "whole first turn", "fitted again (before)", round(total(refit), 2))
    record.put(TABLE, "whole first turn", "grown (after)", round(total(grown), 2))
    record.put(TABLE, "whole first turn", "speed-up", f"{total(refit) / total(grown):.1f}x")
    names = sorted(p.name for p in (index.store.root / "vectors").glob("first.*"))
    assert all(f".{index.mapped.corpus.rows}." in n for n in names), names  # one generation kept


SEARCH_TABLE = "searches on another thread while a commit is mapped, 1M clips (encoder-e5), ms"


def searches_during_refresh(index: Index, text: dict) -> np.ndarray:
    """Latencies (ms) of back-to-back pairs of searches (a text one and a "something like this"
    one) on a thread of their own, from 0.3 s before ``refresh()`` until 1 s after it returned."""
    lat, stop = [], threading.Event()

    def searcher():
        while not stop.is_set():
            t = time.perf_counter()
            index.rank_videos(text, 10)
            index.rank_videos({"visual": index.moment_vector(0, 0.0, 6.0)}, 10, {"visual": 1.0})
            lat.append((time.perf_counter() - t) * 1000)

    th = threading.Thread(target=searcher)
    th.start()
    try:
        time.sleep(0.3)
        assert index.refresh()
        time.sleep(1.0)
    finally:
        stop.set()
        th.join()
    return np.array(lat)


def test_searches_while_a_commit_is_mapped(live, record, monkeypatch):
    """Each commit as `ivcr index` makes it (the writer grows the copies, Index.prepare_search),
    the refresh as it is and as it was (no warm-up, no wait for the old view's searches), taking
    turns, two commits each."""
    index = live
    text = {c: v for c, v in index.encode_queries(["a man rides a bike down a hill"]).items() if c != "lexical"}
    index.rank_videos(text, 10)
    worst: dict[str, list[float]] = {}
    for n, way in enumerate(["now", "before", "before", "now"]):
        commit_one(index, 10 + n)
        writer = Index(index.store.root)
        writer.prepare_search()
        writer.close()
        with monkeypatch.context() as m:
            if way == "before":
                m.setattr(Index, "_warm", lambda self, view: None)
                m.setattr(single, "RETIRE_WAIT_S", 0.0)
            lat = searches_during_refresh(index, text)
        worst.setdefault(way, []).append(float(lat.max()))
        record.put(SEARCH_TABLE, f"commit {n + 1} ({way})", "pairs searched", len(lat))
        record.put(SEARCH_TABLE, f"commit {n + 1} ({way})", "p50", round(float(np.median(lat)), 1))
        record.put(SEARCH_TABLE, f"commit {n + 1} ({way})", "longest", round(float(lat.max()), 1))
    record.note(SEARCH_TABLE, f"longest search pair, before / now: {max(worst['before']):.0f} / {max(worst['now']):.0f} ms "
                              "(a pair: a text ranking and a visual one; 2 cores shared with the refresh)")
