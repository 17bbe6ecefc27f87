"""Processes for the concurrent-read test: a writer that adds (and removes) videos one commit at a
time, and readers that search in a bounded loop and check every answer against what was written.

    python concurrency_worker.py writer ROOT N_VIDEOS N_READERS
    python concurrency_worker.py reader ROOT MODE OUT_JSON      (MODE: refresh | open | threads)

"threads": one Index searched from SEARCH_THREADS threads while another thread refreshes it in a
loop (what `ivcr serve` does), while the main thread refreshes it once more at the end; half its
searches also use the lexical channel.
"""
from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from ivcr_engine.index import ChannelSpec, Index, IndexStore, VideoRecord

DIM = 16
MAX_LOOPS = 3000  # bound on a reader's searches
SEARCH_THREADS = 8
WORDS = ("zebra", "glacier", "violin")  # each video's subtitle line holds one of them


def video_vectors(i: int) -> np.ndarray:
    """Video i's rows: a pure function of i, so a reader can recompute any hit's true score."""
    rng = np.random.default_rng(1000 + i)
    v = rng.normal(size=(1 + (i * 7) % 13, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def query() -> dict:
    q = np.random.default_rng(7).normal(size=(1, DIM)).astype(np.float32)
    return {"visual": q / np.linalg.norm(q)}


def record(i: int, line: bool = False) -> VideoRecord:
    """Video i; with ``line``, a subtitle line that holds one of WORDS."""
    v = video_vectors(i)
    n = len(v)
    times = np.stack([np.arange(n) * 2.0, np.arange(n) * 2.0 + 2.0], 1)
    texts = [("subtitle", 0.0, 2.0, f"a line about a {WORDS[i % 3]}")] if line else []
    return VideoRecord(path=f"/videos/v{i}.mp4", content_hash=f"hash-{i}", duration=2.0 * n, clip_times=times,
                       vectors={"visual": v}, texts=texts)


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
            vid = s.add_video(record(i, line=True))
            if i % 5 == 0:  # tombstones too: a reader must never return a removed video after refresh
                s.remove_videos([vid])
            time.sleep(0.01)  # commits spread over the readers' searches, not all before their first
    (root / "writer-done").touch()


class Checker:
    """Checks a search's hits against what the writer committed (read after the search: committed
    videos only grow) and, for a dense-only search, each hit's score against its video's rows."""

    def __init__(self):
        self.truth: dict[int, float] = {}
        self.q = query()

    def problems(self, root: Path, index, hits, scored: bool, before: list | None = None) -> list[str]:
        """``before``: the reader's videos as it saw them before the search, where another thread
        may refresh the index between the search and this check. A video removed after the search
        took its view is then rightly among the hits (`index.videos` already says removed: a
        flake, once in a full run); one removed before it never is."""
        db = sqlite3.connect(f"file:{root / 'meta.sqlite'}?mode=ro", uri=True)  # (an IndexStore's open writes)
        try:
            committed = {r[0]: {"path": r[1], "duration": r[2]}
                         for r in db.execute("SELECT id, path, duration FROM videos")}
        finally:
            db.close()
        out = []
        for h in hits:
            rec = index.videos[h.video_index]
            i = int(Path(h.path).stem[1:])
            if i not in self.truth:
                rows = video_vectors(i).astype(np.float16).astype(np.float32)
                self.truth[i] = float((rows @ self.q["visual"][0]).max())
            problems = []
            if h.video_id not in committed or committed[h.video_id]["path"] != h.path:
                problems.append("not a committed video")
            seen = before if before is not None else index.videos  # (views only add videos and removals)
            if rec["id"] != h.video_id or (h.video_index < len(seen) and seen[h.video_index]["removed"]):
                problems.append("removed or mismatched in the reader's own view")
            if scored and abs(h.score - self.truth[i]) > 2e-3:
                problems.append(f"score {h.score} but the video's best clip scores {self.truth[i]}")
            if not (0 <= h.start < h.end <= committed.get(h.video_id, {"duration": -1})["duration"] + 1e-6):
                problems.append(f"moment {h.start}-{h.end} outside the video")
            if problems:
                out.append(f"{h.path}: {'; '.join(problems)}")
        return out


def reader(root: Path, mode: str, out: Path) -> None:
    if mode == "threads":
        return threaded_reader(root, out)
    check = Checker()
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
            hits = index.search(check.q, k=5, weights={"visual": 1.0})
            stats["searches"] += 1
            stats["hits"] += len(hits)
            stats["inconsistent"] += check.problems(root, index, hits, scored=True)
        except Exception:
            stats["failures"].append(traceback.format_exc(limit=3))
        if done_seen:
            break
        done_seen = done  # one more round after the writer finished: it must see everything
    index.refresh()
    stats["final_live"] = len(index)
    out.write_text(json.dumps(stats))


def threaded_reader(root: Path, out: Path) -> None:
    stats = {"searches": 0, "failures": [], "inconsistent": [], "refreshed": 0, "hits": 0, "final_live": None,
             "lexical_hits": 0}
    index = Index.open(root, prefault=True)  # as `ivcr serve` opens it: refreshes ready each view before the swap
    index.search({**query(), "lexical": np.array([" ".join(WORDS)])})  # loads the dictionaries (~1 s) before the race
    lock = threading.Lock()
    stop = threading.Event()

    def note(key: str, value) -> None:
        with lock:
            stats[key] += value

    def searcher(t: int) -> None:
        check = Checker()
        for n in range(MAX_LOOPS):
            last = stop.is_set()  # one more search after the writer finished
            try:
                before = index.videos  # the view before the search: the refresher may replace it meanwhile
                if n % 2:  # dense and lexical: a subtitle word joins the visual query
                    word = WORDS[(t + n) % 3]
                    q = {**check.q, "lexical": np.array([word])}
                    hits = index.search(q, k=5, weights={"visual": 1.0, "lexical": 0.5})
                    note("lexical_hits", sum(1 for h in hits if any(word in ln[3] for ln in h.evidence.lines)))
                else:
                    hits = index.search(check.q, k=5, weights={"visual": 1.0})
                note("searches", 1)
                note("hits", len(hits))
                note("inconsistent", check.problems(root, index, hits, scored=n % 2 == 0, before=before))
            except Exception:
                note("failures", [traceback.format_exc(limit=4)])
            if last:
                return

    def refresher() -> None:
        while not stop.is_set():
            try:
                note("refreshed", int(index.refresh()))
            except Exception:
                note("failures", [traceback.format_exc(limit=4)])

    threads = [threading.Thread(target=searcher, args=(t,)) for t in range(SEARCH_THREADS)]
    threads.append(threading.Thread(target=refresher))
    for th in threads:
        th.start()
    (root / f"ready-{out.stem}").touch()
    while not (root / "writer-done").exists():
        time.sleep(0.01)
    index.refresh()  # the writer is done: every search from here on sees all of it
    stop.set()
    for th in threads:
        th.join()
    stats["final_live"] = len(index)
    out.write_text(json.dumps(stats))


if __name__ == "__main__":
    cmd, root = sys.argv[1], Path(sys.argv[2])
    if cmd == "writer":
        writer(root, int(sys.argv[3]), int(sys.argv[4]))
    else:
        reader(root, sys.argv[3], Path(sys.argv[4]))
