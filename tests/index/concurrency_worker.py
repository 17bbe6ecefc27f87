"""Processes for the concurrent-read test: a writer that adds (and removes) videos one commit at a
time, and readers that search in a bounded loop and check every answer against what was written.

    python concurrency_worker.py writer ROOT N_VIDEOS N_READERS
    python concurrency_worker.py reader ROOT MODE OUT_JSON      (MODE: refresh | open)
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ivcr_engine.index import ChannelSpec, Index, IndexStore, VideoRecord

DIM = 16
MAX_LOOPS = 3000  # bound on a reader's searches


def video_vectors(i: int) -> np.ndarray:
    """Video i's rows: a pure function of i, so a reader can recompute any hit's true score."""
    rng = np.random.default_rng(1000 + i)
    v = rng.normal(size=(1 + (i * 7) % 13, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def query() -> dict:
    q = np.random.default_rng(7).normal(size=(1, DIM)).astype(np.float32)
    return {"visual": q / np.linalg.norm(q)}


def record(i: int) -> VideoRecord:
    v = video_vectors(i)
    n = len(v)
    times = np.stack([np.arange(n) * 2.0, np.arange(n) * 2.0 + 2.0], 1)
    return VideoRecord(path=f"/videos/v{i}.mp4", content_hash=f"hash-{i}", duration=2.0 * n, clip_times=times,
                       vectors={"visual": v})


def create(root: Path) -> None:
    with IndexStore(root, create=True) as s:
        s.ensure_channel(ChannelSpec("visual", DIM))
        s.add_video(record(0))


def writer(root: Path, n: int, readers: int) -> None:
    deadline = time.monotonic() + 120  # wait (bounded) until every reader searches, so they overlap
    while len(list(root.glob("ready-*"))) < readers and time.monotonic() < deadline:
        time.sleep(0.01)
    with IndexStore(root) as s:
        for i in range(1, n):
            vid = s.add_video(record(i))
            if i % 5 == 0:  # tombstones too: a reader must never return a removed video after refresh
                s.remove_videos([vid])
    (root / "writer-done").touch()


def reader(root: Path, mode: str, out: Path) -> None:
    q, truth = query(), {}
    stats = {"searches": 0, "failures": [], "inconsistent": [], "refreshed": 0, "hits": 0, "final_live": None}
    index = Index.open(root)
    (root / f"ready-{out.stem}").touch()
    done_seen = False
    for _ in range(MAX_LOOPS):
        done = (root / "writer-done").exists()
        try:
            if mode == "refresh":
                stats["refreshed"] += bool(index.refresh())
            else:
                index.close()
                index = Index.open(root)  # what each `ivcr search` run does
            hits = index.search(q, k=5, weights={"visual": 1.0})
            stats["searches"] += 1
            with IndexStore(root) as check:  # read after the search: committed videos only grow
                committed = {v["id"]: v for v in check.videos(include_removed=True)}
            for h in hits:
                stats["hits"] += 1
                rec = index.videos[h.video_index]
                i = int(Path(h.path).stem[1:])
                if i not in truth:
                    truth[i] = float((video_vectors(i).astype(np.float16).astype(np.float32) @ q["visual"][0]).max())
                problems = []
                if h.video_id not in committed or committed[h.video_id]["path"] != h.path:
                    problems.append("not a committed video")
                if rec["id"] != h.video_id or rec["removed"]:
                    problems.append("removed or mismatched in the reader's own view")
                if abs(h.score - truth[i]) > 2e-3:
                    problems.append(f"score {h.score} but the video's best clip scores {truth[i]}")
                if not (0 <= h.start < h.end <= committed.get(h.video_id, {"duration": -1})["duration"] + 1e-6):
                    problems.append(f"moment {h.start}-{h.end} outside the video")
                if problems:
                    stats["inconsistent"].append(f"{h.path}: {'; '.join(problems)}")
        except Exception:
            stats["failures"].append(traceback.format_exc(limit=3))
        if done_seen:
            break
        done_seen = done  # one more round after the writer finished: it must see everything
    index.refresh()
    stats["final_live"] = len(index)
    out.write_text(json.dumps(stats))


if __name__ == "__main__":
    cmd, root = sys.argv[1], Path(sys.argv[2])
    if cmd == "writer":
        writer(root, int(sys.argv[3]), int(sys.argv[4]))
    else:
        reader(root, sys.argv[3], Path(sys.argv[4]))
