"""The index a server answers from, kept live: ``check()`` (called every ``poll_s`` by the server)
notices rows committed by ``ivcr index`` since the last look and maps them, so new videos are
searchable without a restart. Batching (``BatchingIndex``) is applied here, under the engine."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..index.batching import BatchingIndex
from ..index.sharded import is_sharded, open_index, read_manifest


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


class LiveIndex:
    def __init__(self, engine, root: str | Path, batching: bool | None = None, poll_s: float = 1.0):
        self.engine, self.root, self.batching, self.poll_s = engine, Path(root), batching, poll_s
        self.on_refresh = None  # callback after new commits were mapped
        self.on_batch = None    # callback(batch size), forwarded to the batcher
        self._lock = threading.Lock()
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

    def queue_depth(self) -> int:
        idx = self.engine.index
        return idx.queue_depth() if isinstance(idx, BatchingIndex) else 0

    def check(self) -> bool:
        """Map what was committed since the last check; True when the index changed."""
        with self._lock:
            sig = commit_signature(self.root)
            if sig == self._signature:
                return False
            current = self.engine.index
            inner = current.inner if isinstance(current, BatchingIndex) else current
            if getattr(inner, "actors", None):  # shards on Ray actors: each actor refreshes between its calls
                inner.refresh()
                self.engine.forget_vectors()  # cheap to make again; the text model may have changed
            else:  # in this process turns run on many threads, and Index.refresh() must not race a
                # search on the same object: open the index again (sharing the encoder) and swap
                fresh = open_index(self.root, text_encoder=inner.text_encoder, prefault=getattr(inner, "prefault", False))
                self.engine.index = self._wrap(fresh)
                if isinstance(current, BatchingIndex):  # turns in flight may still hold it: close later
                    closer = threading.Timer(60.0, current.close)
                    closer.daemon = True  # never holds the process open at exit
                    closer.start()
            self._signature = sig
        if self.on_refresh is not None:
            self.on_refresh()
        return True
