"""Scale-out on a real local Ray cluster (127.0.0.1, 2 CPUs, no dashboard, no usage stats): ingest
the shared videos into 3 shards on 2 Ray workers while one worker is killed, re-run, then search
and talk over the shards on Ray actors and compare with the single index."""
from __future__ import annotations

import os
import signal

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (make test installs it)")

from ivcr_engine.dialogue import Engine  # noqa: E402
from ivcr_engine.index import Index, IndexStore  # noqa: E402
from ivcr_engine.index.ray_cluster import start_local  # noqa: E402
from ivcr_engine.index.ray_ingest import RayIngest  # noqa: E402
from ivcr_engine.index.manifest import read_manifest  # noqa: E402
from ivcr_engine.index.sharded import ShardedIndex  # noqa: E402

from .common import assert_same_hits, transcript  # noqa: E402


@pytest.fixture(scope="module")
def cluster(request):
    start_local(num_cpus=2)
    request.addfinalizer(ray.shutdown)
    return ray


@pytest.fixture(scope="module")
def ray_ingested(cluster, shared_data, tmp_path_factory):
    """3 shards ingested by 2 Ray workers; worker 0 is killed (SIGKILL) right after the first commit;
    then a second run. Returns (root, first report, second report, pids before/after the kill)."""
    root = tmp_path_factory.mktemp("ray_ingest") / "sharded"
    ing = RayIngest(root, "auto", workers=2, shards=3)
    pids = {}

    def kill_once(path):
        if not pids:
            pids["before"] = ray.get(ing.workers[0].pid.remote())
            os.kill(pids["before"], signal.SIGKILL)

    try:
        first = ing.run([shared_data / "videos"], progress=False, on_video=kill_once)
        pids["after"] = ray.get(ing.workers[0].pid.remote())  # Ray restarted it (models loaded again)
        second = ing.run([shared_data / "videos"], progress=False)
    finally:
        ing.close()
    return root, first, second, pids


@pytest.fixture(scope="module")
def single(cluster, shared_data, tmp_path_factory):
    """The same videos in one unsharded index, encoded by a Ray worker too: encoders on a Ray
    worker run with OMP_NUM_THREADS=1, which moves Whisper's word times by a few ms against a
    process with more OpenMP threads, so the reference is encoded the same way."""
    root = tmp_path_factory.mktemp("single") / "index"
    ing = RayIngest(root, "auto", workers=1)
    try:
        report = ing.run([shared_data / "videos"], progress=False)
        assert len(report.added) == 8
    finally:
        ing.close()
    return Index.open(root)


def test_killed_worker_loses_and_duplicates_nothing(ray_ingested, shared_data):
    root, first, second, pids = ray_ingested
    assert pids["after"] != pids["before"]
    assert len(first.added) + len(first.failed) == 8
    assert sorted(second.added) == sorted(p for p, _ in first.failed) and not second.failed
    assert len(second.skipped) == len(first.added)
    paths = []
    for shard in read_manifest(root):
        with IndexStore(shard) as st:
            paths += [v["path"] for v in st.videos(include_removed=True)]
    assert sorted(paths) == sorted(str(p.resolve()) for p in (shared_data / "videos").iterdir())


def test_ray_shards_give_the_single_index_hits_and_transcript(ray_ingested, single, cluster):
    one = single
    sharded = ShardedIndex(ray_ingested[0], ray_address="auto")
    try:
        assert len(sharded.actors) == 3 and len(sharded) == 8
        assert len({i["pid"] for i in sharded._info}) == 3  # one actor process per shard
        assert_same_hits(one, sharded)
        assert transcript(Engine(one)) == transcript(Engine(sharded))
    finally:
        sharded.close()


def test_in_process_and_ray_shards_agree(ray_ingested, cluster):
    local = ShardedIndex(ray_ingested[0])
    remote = ShardedIndex(ray_ingested[0], ray_address="auto")
    try:
        q = local.encode_queries(["a parrot", "a space telescope", "a bunny"])
        a, b = local.rank_videos(q, 6), remote.rank_videos(q, 6)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
        m = local.best_moments(local.encode_queries(["a parrot"]), int(a[0][0, 0]))
        assert m == remote.best_moments(local.encode_queries(["a parrot"]), int(a[0][0, 0]))
    finally:
        remote.close()
