"""Micro-batching over any ``VideoIndex``: concurrent ``encode_queries`` and ``rank_videos``
calls (from many sessions on many threads) are gathered for a few milliseconds, or until
``max_batch`` requests wait, into batched encoder calls (distinct texts only, sorted by length,
in chunks of ``ENCODE_CHUNK``) and one batched native search, and the results are split back per
caller. Texts whose vectors the query encoder has cached (query_encoder.py, the engine's one
cache) are answered at once, without waiting for a batch.

``BatchingIndex(index)`` implements the same protocol, so a dialogue runs on it unchanged;
everything except those two calls passes straight through to the wrapped index. Requests with a
short ``deny`` list join a batch by asking for ``k + len(deny)`` and dropping the denied refs
afterwards with the engine's one top-k merge (the exact answer, since at most ``len(deny)`` of the
top ``k + len(deny)`` are denied); ``allow``-restricted requests scan few rows and run alone.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Mapping, Sequence

import numpy as np

from ..corpus import merge_topk
from ..errors import InvalidArgument, WrongType
from .layout import LEXICAL
from .protocol import lexical_rows

DEFAULT_WINDOW_S = 0.003
DEFAULT_MAX_BATCH = 32
MAX_JOINED_DENY = 64  # longer deny lists run alone (the over-fetch would cost more than it saves)
# A text encoder pads a batch to its longest text: on a CPU one padded batch of 32 mixed sentences
# (fp32 MiniLM) cost more than 32 single calls, while 8 of similar length cost about half of
# theirs. So a gathered batch is sorted by length and encoded in chunks of this many. (The int8
# query encoder encodes one text per call anyway; then dedup and the cache are what remain.)
ENCODE_CHUNK = 8


class _Gatherer:
    """One worker thread: takes the first waiting request, waits up to ``window_s`` for more (or
    until ``max_batch``), runs ``run_batch(items) -> results`` once, and resolves each future.

    A lone request that finds the worker idle for longer than the window (the previous batch ended
    that long ago) runs at once: with nobody else about, waiting only added the window to its
    latency (one session over HTTP, docs/BENCHMARKS.md). Under load batches follow each other
    closely and every batch waits its window as before."""

    def __init__(self, name: str, run_batch: Callable[[list], list], window_s: float, max_batch: int,
                 on_batch: Callable[[int], None] | None = None):
        self._run_batch, self._window, self._max = run_batch, window_s, max_batch
        self._on_batch = on_batch
        self._queue: deque[tuple[object, Future]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._last_end = float("-inf")  # when the previous batch finished (worker thread only)
        self._thread = threading.Thread(target=self._loop, name=f"ivcr-batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, item) -> object:
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the batching index is closed")
            self._queue.append((item, fut))
            self._cv.notify()
        return fut.result()

    def depth(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=5)

    def _take(self) -> list[tuple[object, Future]]:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return []
            now = time.monotonic()
            if len(self._queue) == 1 and now - self._last_end > self._window:
                return [self._queue.popleft()]
            deadline = now + self._window
            while len(self._queue) < self._max and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            n = min(self._max, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                results = self._run_batch([item for item, _ in batch])
            except BaseException as exc:  # one failed call fails the requests that shared it, nothing else
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            finally:
                self._last_end = time.monotonic()
            for (_, fut), res in zip(batch, results):
                fut.set_result(res)


class BatchingIndex:
    """A ``VideoIndex`` that batches concurrent ``encode_queries`` and ``rank_videos`` calls."""

    def __init__(self, index, window_s: float = DEFAULT_WINDOW_S, max_batch: int = DEFAULT_MAX_BATCH):
        for name in ("encode_queries", "rank_videos"):
            if not callable(getattr(index, name, None)):
                raise WrongType(f"BatchingIndex needs an index with the VideoIndex protocol; {type(index).__name__} "
                                f"has no {name}()")
        if window_s < 0 or max_batch < 1:
            raise InvalidArgument("window_s must be >= 0 and max_batch >= 1")
        self.inner = index
        self.on_batch: Callable[[int], None] | None = None  # told each batch's size (metrics)
        self._encode = _Gatherer("encode", self._encode_batch, window_s, max_batch, self._told)
        self._rank = _Gatherer("rank", self._rank_batch, window_s, max_batch, self._told)

    def _told(self, n: int) -> None:
        if self.on_batch is not None:
            self.on_batch(n)

    def __getattr__(self, name):  # the rest of the protocol (and of the index) is the wrapped index's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def queue_depth(self) -> int:
        return self._encode.depth() + self._rank.depth()

    def close(self) -> None:
        self._encode.close()
        self._rank.close()

    # -- encode ---------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = list(texts)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise InvalidArgument("encode_queries needs one or more non-empty strings")
        cached = self.inner.queries.cached_rows(texts)
        if cached is not None:  # nothing to encode: no need to wait for a batch
            return cached
        return self._encode.submit(texts)

    def _encode_batch(self, requests: list[list[str]]) -> list[dict[str, np.ndarray]]:
        """Distinct texts, shortest first, in chunks of ENCODE_CHUNK (the query encoder caches
        what it encodes); each request's rows are gathered from the chunks' results."""
        todo = sorted({t for texts in requests for t in texts}, key=len)
        known: dict[str, dict[str, np.ndarray]] = {}
        for a in range(0, len(todo), ENCODE_CHUNK):
            chunk = todo[a:a + ENCODE_CHUNK]
            out = self.inner.encode_queries(chunk)
            for i, t in enumerate(chunk):
                known[t] = {c: v[i:i + 1] for c, v in out.items()}
        return [{c: np.concatenate([known[t][c] for t in texts]) for c in known[texts[0]]} for texts in requests]

    # -- rank -----------------------------------------------------------------------------
    def rank_videos(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                    allow: Sequence[int] | None = None, deny: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, not {k!r}")
        deny = sorted({int(d) for d in deny}) if deny is not None else []
        if allow is not None or len(deny) > MAX_JOINED_DENY:
            return self.inner.rank_videos(queries, k, weights=weights, allow=allow, deny=deny or None)
        qs = {c: lexical_rows(v) if c == LEXICAL else np.ascontiguousarray(v, np.float32).reshape(-1, np.shape(v)[-1])
              for c, v in queries.items()}
        rows = {v.shape[0] for v in qs.values()}
        if len(rows) != 1:
            raise InvalidArgument(f"every channel of a query batch needs the same number of rows, got {sorted(rows)}")
        key = (tuple(sorted((c, v.shape[1]) for c, v in qs.items())),
               None if weights is None else tuple(sorted((c, float(w)) for c, w in weights.items())))
        return self._rank.submit((key, qs, int(k), weights, deny))

    def _rank_batch(self, requests: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
        results: list = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, (key, *_rest) in enumerate(requests):  # one native search per channel layout + weights
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            weights = requests[members[0]][3]
            fetch = max(requests[i][2] + len(requests[i][4]) for i in members)
            stacked = {c: np.concatenate([requests[i][1][c] for i in members]) for c in requests[members[0]][1]}
            refs, scores = self.inner.rank_videos(stacked, fetch, weights=weights)
            row = 0
            for i in members:
                _, qs, k, _, deny = requests[i]
                n = next(iter(qs.values())).shape[0]
                kept_scores, kept_refs = merge_topk(refs[row:row + n], scores[row:row + n], k, deny)
                results[i] = (kept_refs, kept_scores)
                row += n
        return results
