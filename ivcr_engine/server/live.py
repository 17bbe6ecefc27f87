"""The index a server answers from, kept live: ``check()`` (called every ``poll_s`` by the server)
notices rows committed by ``ivcr index`` since the last look and refreshes the index in place, so
new videos are searchable without a restart. Batching (``BatchingIndex``) is applied here, under
the engine."""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from ..index.batching import BatchingIndex
from ..index.manifest import MANIFEST, is_sharded, read_manifest


def commit_signature(root: Path) -> tuple:
    """What changes when a video is committed, removed or aliased (read on connections of its
    own), for an index folder or every shard of a sharded one."""
    if is_sharded(root):
        return tuple(commit_signature(p) for p in read_manifest(root))
    db = sqlite3.connect(f"file:{root / 'meta.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT MAX(rows) FROM channels").fetchone()[0] or 0
        vids, removed = db.execute("SELECT COUNT(*), COALESCE(SUM(removed), 0) FROM videos").fetchone()
        has_aliases = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'aliases'").fetchone()
        aliases = db.execute("SELECT COUNT(*) FROM aliases").fetchone()[0] if has_aliases else 0
        return int(rows), int(vids), int(removed), int(aliases)
    finally:
        db.close()


def file_stamp(root: Path) -> list[tuple | None]:
    """The metadata files' (inode, size, mtime) of an index folder, or of the manifest and every
    shard of a sharded one. A commit writes the WAL (or, checkpointed, the database file), so an
    unchanged stamp means nothing was committed and commit_signature's counts need not be read
    (they scan every video row: milliseconds at 100k videos, once a second on a server). Not quite:
    mtimes tick coarsely and a WAL reused after a checkpoint keeps its size, so a commit in the
    same tick as the stamp can leave it unchanged; LiveIndex trusts a stamp only once its files
    have been still for SETTLE_S."""
    if is_sharded(root):
        return [_stat(root / MANIFEST)] + [s for p in read_manifest(root) for s in file_stamp(p)]
    return [_stat(root / "meta.sqlite"), _stat(root / "meta.sqlite-wal")]


SETTLE_S = 2.0


def _stat(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class LiveIndex:
    def __init__(self, engine, root: str | Path, batching: bool | None = None, poll_s: float = 1.0):
        self.engine, self.root, self.batching, self.poll_s = engine, Path(root), batching, poll_s
        self.on_refresh = None  # callback after new commits were mapped
        self.on_batch = None    # callback(batch size), forwarded to the batcher
        self._lock = threading.Lock()
        self._stamp, self._settled = self._take_stamp()  # taken first: a later commit changes it (see file_stamp)
        self._signature = commit_signature(self.root)
        engine.index = self._wrap(engine.index)

    def _wrap(self, index):
        if self.batching is None:  # auto: on wherever the index speaks the protocol
            self.batching = callable(getattr(index, "encode_queries", None))
        if not self.batching:
            return index
        if not callable(getattr(index, "encode_queries", None)):
            raise RuntimeError("micro-batching needs the VideoIndex protocol (encode_queries, batched rank_videos) "
                               "on Index; serve with batching off until it lands")
        wrapped = BatchingIndex(index)
        wrapped.on_batch = lambda n: self.on_batch and self.on_batch(n)
        return wrapped

    def _take_stamp(self) -> tuple[list, bool]:
        """The folder's file stamp, and whether its files had been still for SETTLE_S when taken."""
        now = time.time_ns()
        stamp = file_stamp(self.root)
        newest = max((s[2] for s in stamp if s is not None), default=0)
        return stamp, now - newest > SETTLE_S * 1e9

    def queue_depth(self) -> int:
        idx = self.engine.index
        return idx.queue_depth() if isinstance(idx, BatchingIndex) else 0

    def check(self) -> bool:
        """Map what was committed since the last check; True when the index changed."""
        with self._lock:
            stamp, settled = self._take_stamp()
            if stamp == self._stamp and self._settled:
                return False
            self._stamp, self._settled = stamp, settled
            sig = commit_signature(self.root)
            if sig == self._signature:
                return False
            current = self.engine.index
            inner = current.inner if isinstance(current, BatchingIndex) else current
            # the one index, refreshed in place beside the turns running on other threads: a turn
            # finishes on the view it started with (Index.refresh; a sharded index refreshes each
            # shard, here or on its Ray actor)
            inner.refresh()
            self._signature = sig
        if self.on_refresh is not None:
            self.on_refresh()
        return True
