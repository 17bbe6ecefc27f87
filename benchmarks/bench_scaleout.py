"""Scale-out on a local Ray cluster (127.0.0.1, 2 CPUs):

- ingest throughput of the shared videos with 1 against 2 Ray encoding workers (1 thread each);
- search latency on the 1M-clip synthetic index (synthetic_index.py, gaussian: 100k videos x 10 clips)
  split into 4 shards, searched in-process and on 4 Ray actors, against the single index: the
  overhead of fan-out and merge in ms, and how many of the single index's top 10 come back.

The 4-shard copy (about 4.9 GB) is built once into .cache/bench/latency_index_4shards.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from synthetic_index import CACHE, CLIPS, N_VIDEOS, open_index  # noqa: E402

from ivcr_engine.index import Index, IndexStore  # noqa: E402
from ivcr_engine.index.ray_cluster import start_local  # noqa: E402
from ivcr_engine.index.ray_ingest import RayIngest  # noqa: E402
from ivcr_engine.index.manifest import is_sharded, read_manifest, split_index  # noqa: E402
from ivcr_engine.index.sharded import ShardedIndex  # noqa: E402
from ivcr_engine.models import prepare_models  # noqa: E402

INGEST = "Ray ingest (shared videos: 8 files, 66 s of video), 1 thread per worker"
LATENCY = "sharded search (1M clips: 100k videos x 10 clips), ms per query"
N_QUERIES = 20
_INGEST_WALL: dict[int, float] = {}
_LATENCY: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(request):
    start_local(num_cpus=2)
    request.addfinalizer(ray.shutdown)
    return ray


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_ingest(benchmark, record, cluster, shared_data, tmp_path_factory, workers):
    prepare_models()
    reports, ingests = [], []

    def setup():  # actors start and load their models outside the timed part
        ingests.append(RayIngest(tmp_path_factory.mktemp("ray_idx") / "index", "auto", workers=workers))
        return (), {}

    def run():
        ing = ingests[-1]
        try:
            reports.append(ing.run([shared_data / "videos"], progress=False))
        finally:
            ing.close()

    benchmark.pedantic(run, setup=setup, rounds=2, warmup_rounds=0)
    best = min(reports, key=lambda r: r.wall_seconds)
    assert len(best.added) == 8 and not best.failed
    _INGEST_WALL[workers] = best.wall_seconds
    row = f"{workers} worker{'s' if workers > 1 else ''}"
    record.put(INGEST, row, "videos/s", len(best.added) / best.wall_seconds)
    record.put(INGEST, row, "video s / wall s", best.seconds_of_video / best.wall_seconds)
    record.put(INGEST, row, "wall s", best.wall_seconds)
    if workers == 2 and 1 in _INGEST_WALL:
        record.put(INGEST, row, "x 1 worker", _INGEST_WALL[1] / best.wall_seconds)
    record.note(INGEST, "wall s is RayIngest.run() alone: the actors load their models once before it")


@pytest.fixture(scope="module")
def indexes(cluster):
    """(single, 4 shards in-process, 4 shards on Ray actors), with their int8 caches built."""
    prepare_models()
    root = open_index("gaussian")
    dst = CACHE / "latency_index_4shards"
    if not is_sharded(dst) or sum(IndexStore(p).row_count() for p in read_manifest(dst)) != N_VIDEOS * CLIPS:
        split_index(root, dst, 4)  # resumable: a half-built copy is completed
    single, local, remote = Index.open(root), ShardedIndex(dst), ShardedIndex(dst, ray_address="auto")
    yield single, local, remote
    remote.close()


@pytest.fixture(scope="module")
def queries(indexes, shared_data):
    import json

    data = json.loads((shared_data / "annotations" / "activitynet_captions" / "val.json").read_text())
    texts = [s.strip().rstrip(".") for item in list(data.values())[:N_QUERIES] for s in item["sentences"][:1]]
    q = indexes[0].encode_queries(texts)  # one batched encode; every index gets the same vectors
    rows = [{c: v[i:i + 1] for c, v in q.items()} for i in range(len(texts))]
    for ix in indexes:  # untimed: builds each shard's int8 first-stage copy, warms the page cache
        for r in rows[:2]:
            ix.search(r, k=10)
    return rows


@pytest.mark.parametrize("impl", ["single index", "4 shards in-process", "4 shards on 4 Ray actors"])
def test_sharded_search_latency(benchmark, record, indexes, queries, impl):
    ix = indexes[["single index", "4 shards in-process", "4 shards on 4 Ray actors"].index(impl)]
    times: list[float] = []

    def run():
        for q in queries:
            t0 = time.perf_counter()
            ix.search(q, k=10)
            times.append(time.perf_counter() - t0)

    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    ms = np.array(times) * 1000
    p50 = float(np.percentile(ms, 50))
    _LATENCY[impl] = p50
    record.put(LATENCY, impl, "p50", p50)
    record.put(LATENCY, impl, "p99", float(np.percentile(ms, 99)))
    if impl != "single index" and "single index" in _LATENCY:
        record.put(LATENCY, impl, "overhead p50 vs single", p50 - _LATENCY["single index"])
        hits = [len({h.path for h in indexes[0].search(q, k=10)} & {h.path for h in ix.search(q, k=10)}) / 10
                for q in queries]
        record.put(LATENCY, impl, "recall@10 vs single", float(np.mean(hits)))
    record.note(LATENCY, "search() with pre-encoded query vectors: video ranking (two stages per index or "
                         "per shard) + moments + evidence of the top 10")
