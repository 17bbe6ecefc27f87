"""Sharded indexes without Ray: split an index into 3 shards and get the same hits and the same
dialogue; ingest straight into shards; manifest errors; the CLI over a manifest."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ivcr_engine.dialogue import Engine
from ivcr_engine.index import Index, IndexStore, Ingestor, VideoIndex
from ivcr_engine.index.manifest import create_manifest, read_manifest, split_index
from ivcr_engine.index.partition import shard_of
from ivcr_engine.index.sharded import ShardedIndex, open_index

from .common import assert_same_hits, transcript


@pytest.fixture(scope="module")
def split3(shared_index, tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "sharded"
    counts = split_index(shared_index[0], root, 3)
    return root, counts


def test_split_places_every_video_once_by_content_hash(shared_index, split3):
    root, counts = split3
    single = IndexStore(shared_index[0])
    want = {v["content_hash"]: v["path"] for v in single.videos()}
    got = {}
    for s, path in enumerate(read_manifest(root)):
        with IndexStore(path) as st:
            for v in st.videos():
                assert shard_of(v["content_hash"], 3) == s and v["content_hash"] not in got
                got[v["content_hash"]] = v["path"]
    assert got == want and sum(counts) == len(want) == 8
    assert split_index(shared_index[0], root, 3) == counts  # a second run adds nothing
    assert sum(len(IndexStore(p).videos()) for p in read_manifest(root)) == 8


def test_sharded_search_and_dialogue_equal_the_single_index(shared_index, split3):
    one, sharded = Index.open(shared_index[0]), ShardedIndex(split3[0])
    assert isinstance(sharded, VideoIndex)
    assert len(sharded) == len(one) == 8 and sharded.num_refs() >= 8
    assert_same_hits(one, sharded)
    # the moments compared include ones snapped to a text line (split_index carried the lines' vectors)
    hit = sharded.search("a space telescope in a clean room", k=1)[0]
    nasa = next(v for v in one.videos if v["path"] == hit.path)
    assert hit.path.endswith("nasa_13013.mp4") and hit.start % 2 != 0
    assert (hit.start, hit.end) in {(a, b) for _, a, b, _ in one.store.texts(nasa["id"])}
    q = one.encode_queries(["a parrot", "a dog"])
    ra, sa = one.rank_videos(q, 10)
    rb, sb = sharded.rank_videos(q, 10)
    assert [[one.video(int(r)).path if r >= 0 else None for r in row] for row in ra] == \
           [[sharded.video(int(r)).path if r >= 0 else None for r in row] for row in rb]
    assert transcript(Engine(one)) == transcript(Engine(sharded))
    # a turn's candidates' moments in one call per shard: what one call per video finds, in order
    q1 = one.encode_queries(["a space telescope in a clean room"])
    by_path = {sharded.video(r).path: r for r in range(sharded.num_refs()) if not sharded.video(r).removed}
    refs = sorted(by_path.values())
    many = sharded.best_moments_many(q1, refs)
    assert [[(m.video, m.start, m.end) for m in ms] for ms in many] == \
           [[(m.video, m.start, m.end) for m in sharded.best_moments(q1, r)] for r in refs]
    local = {v["path"]: i for i, v in enumerate(one.videos)}
    assert [[(m.start, m.end) for m in ms] for ms in many] == \
           [[(m.start, m.end) for m in one.best_moments(q1, local[sharded.video(r).path])] for r in refs]


def test_refs_are_global_and_filters_translate(split3):
    sharded = ShardedIndex(split3[0])
    live = [r for r in range(sharded.num_refs()) if not sharded.video(r).removed]
    assert len(live) == 8 and all(sharded.video(r).video_id.startswith(f"s{r % 3}:") for r in live)
    q = sharded.encode_queries(["a parrot"])
    refs, _ = sharded.rank_videos(q, 10, allow=live[:4], deny=[live[0]])
    assert set(refs[0][refs[0] >= 0].tolist()) == set(live[1:4])
    with pytest.raises(ValueError, match="no video with ref"):
        sharded.rank_videos(q, 5, deny=[sharded.num_refs()])


def test_ingest_into_shards_directly(shared_data, tmp_path):
    videos = [shared_data / "videos" / n for n in ("cockatoo.mp4", "bikes.mp4", "nasa_13013.mp4")]
    ing = Ingestor(tmp_path / "idx", speech=False, shards=2)
    try:
        report = ing.run(videos, progress=False)
        assert len(report.added) == 3 and not report.failed
        again = ing.run(videos, progress=False)
        assert len(again.skipped) == 3 and not again.added
    finally:
        ing.close()
    index = open_index(tmp_path / "idx")
    assert isinstance(index, ShardedIndex) and len(index) == 3
    assert index.search("a parrot", k=1)[0].path.endswith("cockatoo.mp4")
    with pytest.raises(ValueError, match="already has 2 shards"):
        Ingestor(tmp_path / "idx", speech=False, shards=3)


def test_manifest_errors_are_clear(tmp_path, shared_index):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "shards.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        ShardedIndex(tmp_path / "bad")
    (tmp_path / "bad" / "shards.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="manifest"):
        ShardedIndex(tmp_path / "bad")
    create_manifest(tmp_path / "empty", 2)
    with pytest.raises(FileNotFoundError, match="missing"):
        ShardedIndex(tmp_path / "empty")
    with pytest.raises(ValueError, match="shards must be an int"):
        create_manifest(tmp_path / "zero", 0)
    with pytest.raises(ValueError, match="unsharded index"):
        create_manifest(shared_index[0], 2)
    with pytest.raises(ValueError, match="not a sharded index"):
        open_index(shared_index[0], ray_address="auto")


def test_cli_split_and_search_over_a_manifest(shared_index, tmp_path):
    run = [sys.executable, "-m", "ivcr_engine"]
    out = subprocess.run(run + ["shard", "split", "--index", str(shared_index[0]), "--out", str(tmp_path / "s2"),
                                "--shards", "2", "--quiet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "2 shards" in out.stdout
    single = subprocess.run(run + ["search", "--index", str(shared_index[0]), "a parrot", "-k", "3"],
                            capture_output=True, text=True)
    sharded = subprocess.run(run + ["search", "--index", str(tmp_path / "s2"), "a parrot", "-k", "3"],
                             capture_output=True, text=True)
    assert sharded.returncode == 0, sharded.stderr
    assert sharded.stdout == single.stdout and "cockatoo.mp4" in sharded.stdout
    bad = subprocess.run(run + ["shard", "split", "--index", str(shared_index[0]), "--out", str(tmp_path / "s0"),
                                "--shards", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "expected a number >= 1" in bad.stderr


def test_refresh_fans_out_to_the_shards(shared_index, tmp_path):
    root = tmp_path / "s2"
    split_index(shared_index[0], root, 2)
    sharded = ShardedIndex(root)
    assert sharded.refresh() is False and len(sharded) == 8
    gone = next(r for r in range(sharded.num_refs()) if not sharded.video(r).removed)
    with IndexStore(read_manifest(root)[gone % 2]) as st:  # another process's commit, in effect
        st.remove_videos([int(sharded.video(gone).video_id.split(":")[1])])
    assert sharded.refresh() is True and len(sharded) == 7 and sharded.video(gone).removed
    q = sharded.encode_queries(["a parrot"])
    assert gone not in sharded.rank_videos(q, 10)[0][0].tolist()
    assert sharded.refresh() is False
