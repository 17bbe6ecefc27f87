"""The first turn after a commit on a live 1M-clip index (what `ivcr serve` pays when ingest
commits beside it): the first-stage copies and lists grown with their kept encodings
(first_stage.py, inverted_lists.py) against fitted again, as every commit cost before; same run,
same index, one video committed before each.

The encoder-e5 corpus (synthetic_index.py, 5.4 GB) is copied into .cache/bench/live_growth and
removed afterwards. A "turn" here is ``Index.refresh()`` then the first text ranking and the first
"something like this" ranking, each of which builds its stage's copies.

``pytest benchmarks/bench_live_growth.py --benchmark-enable -p no:randomly -s``
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from ivcr_engine.index import Index, IndexStore, VideoRecord, first_stage
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
