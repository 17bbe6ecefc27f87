"""BatchingIndex: concurrent callers get exactly what they would get alone, in fewer native calls.
The wrapped index is a small implementation of the VideoIndex protocol's two batched calls over the
real native search core (``Corpus``) and the real text encoder."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ivcr_engine.index.batching import MAX_JOINED_DENY, BatchingIndex
from ivcr_engine.corpus import Corpus


class CorpusIndex:
    """encode_queries / rank_videos as the protocol specifies, counting the calls it receives."""

    def __init__(self, n_videos=300, clips=6, dim=384, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n_videos * clips, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        self.corpus = Corpus({"concept": x}, np.arange(0, n_videos * clips + 1, clips))
        self.n = n_videos
        self.encode_calls, self.rank_calls, self.rank_rows = 0, 0, []
        self._queries = None

    def __len__(self):
        return self.n

    @property
    def queries(self):  # the engine's query encoder (and its cache), bound to a MiniLM concept channel
        from ivcr_engine.index.query_encoder import QueryEncoder
        from ivcr_engine.models import TextEncoder

        self._queries = self._queries or QueryEncoder(text_encoder=TextEncoder()).bind({}, ["concept"])
        return self._queries

    def encode_queries(self, texts):
        self.encode_calls += 1
        return self.queries.rows(list(texts))

    def rank_videos(self, queries, k, weights=None, allow=None, deny=None):
        self.rank_calls += 1
        self.rank_rows.append(next(iter(queries.values())).shape[0])
        res = self.corpus.topk_videos(queries, k, weights=weights, allow=allow, deny=deny)
        refs = np.full((res.ids.shape[0], k), -1, np.int64)
        scores = np.full((res.ids.shape[0], k), -np.inf, np.float32)
        refs[:, :res.ids.shape[1]], scores[:, :res.ids.shape[1]] = res.ids, res.scores
        return refs, scores

    def extra(self):
        return "passed through"


def run_together(fns):
    """Start every call at once (a barrier), return their results in order."""
    out, errors = [None] * len(fns), []
    barrier = threading.Barrier(len(fns))

    def go(i):
        barrier.wait()
        try:
            out[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


def test_concurrent_rank_calls_batch_and_match_solo_answers():
    inner = CorpusIndex()
    rng = np.random.default_rng(1)
    qs = rng.standard_normal((24, 384)).astype(np.float32)
    reqs = [({"concept": qs[i:i + 1]}, 3 + i % 8, sorted(rng.choice(300, i % 5, replace=False).tolist()))
            for i in range(24)]
    solo = [inner.rank_videos(q, k, deny=d or None) for q, k, d in reqs]
    inner.rank_calls = 0
    # a long window: every caller reaches the queue inside it, whatever the machine's load
    b = BatchingIndex(inner, window_s=0.5, max_batch=32)
    got = run_together([lambda q=q, k=k, d=d: b.rank_videos(q, k, deny=d) for q, k, d in reqs])
    for (refs, scores), (want_r, want_s), (_, k, d) in zip(got, solo, reqs):
        assert refs.shape == (1, k)
        np.testing.assert_array_equal(refs, want_r)
        np.testing.assert_allclose(scores, want_s, rtol=1e-6)
        assert not set(refs[0].tolist()) & set(d)
    assert inner.rank_calls < len(reqs) and max(inner.rank_rows) > 1
    b.close()


def test_concurrent_encode_calls_batch():
    inner = CorpusIndex()
    texts = [["a dog on a beach"], ["someone cooking", "rain in the mountains"], ["a parrot"], ["a city at night"]]
    solo = [inner.encode_queries(t)["concept"] for t in texts]
    inner.encode_calls = 0
    b = BatchingIndex(inner, window_s=0.5)
    got = run_together([lambda t=t: b.encode_queries(t) for t in texts])
    for g, s in zip(got, solo):
        np.testing.assert_allclose(g["concept"], s, atol=1e-5)
    assert inner.encode_calls < len(texts)
    calls = inner.encode_calls
    again = b.encode_queries(["a parrot", "a dog on a beach"])  # both encoded before: from the cache
    assert inner.encode_calls == calls
    np.testing.assert_allclose(again["concept"], np.concatenate([solo[2], solo[0]]), atol=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        b.encode_queries([""])
    b.close()


def test_allow_long_deny_and_multi_row_requests():
    inner = CorpusIndex()
    b = BatchingIndex(inner, window_s=0.001)
    q = {"concept": np.random.default_rng(2).standard_normal((3, 384)).astype(np.float32)}
    r, s = b.rank_videos(q, 4)
    np.testing.assert_array_equal(r, inner.rank_videos(q, 4)[0])
    assert r.shape == (3, 4)
    allow = [5, 9, 11]
    r, _ = b.rank_videos(q, 5, allow=allow)  # runs alone; fewer candidates than k: padded with -1
    assert set(r[r >= 0].tolist()) <= set(allow) and (r[:, 3:] == -1).all()
    deny = list(range(MAX_JOINED_DENY + 10))
    r, _ = b.rank_videos(q, 4, deny=deny)
    np.testing.assert_array_equal(r, inner.rank_videos(q, 4, deny=deny)[0])
    with pytest.raises(ValueError, match="k must be"):
        b.rank_videos(q, 0)
    with pytest.raises(ValueError, match="same number of rows"):
        b.rank_videos({"concept": q["concept"], "other": q["concept"][:1]}, 3)
    assert b.extra() == "passed through" and len(b) == 300
    b.close()


def test_a_failing_batch_fails_only_its_callers():
    inner = CorpusIndex()
    b = BatchingIndex(inner, window_s=0.001)
    with pytest.raises(Exception):
        b.rank_videos({"concept": np.zeros((1, 7), np.float32)}, 3)  # wrong dimension: the core refuses
    r, _ = b.rank_videos({"concept": np.ones((1, 384), np.float32)}, 3)  # the worker lives on
    assert (r >= 0).all()
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.rank_videos({"concept": np.ones((1, 384), np.float32)}, 3)


def test_refuses_an_index_without_the_protocol():
    with pytest.raises(TypeError, match="VideoIndex protocol"):
        BatchingIndex(object())


def test_a_lone_request_on_an_idle_batcher_does_not_wait_for_the_window():
    """Nobody else about: a request runs at once instead of waiting out the window (a minute here,
    so waiting would fail the join below); a burst right after it is gathered as before (it waits
    for max_batch requests, the window being that long)."""
    inner = CorpusIndex()
    b = BatchingIndex(inner, window_s=60.0, max_batch=4)
    rng = np.random.default_rng(1)
    queries = [{"concept": rng.standard_normal((1, 384)).astype(np.float32)} for _ in range(5)]
    done = []
    t = threading.Thread(target=lambda: done.append(b.rank_videos(queries[0], 5)), daemon=True)
    t.start()
    t.join(20)
    assert done and inner.rank_calls == 1
    got = run_together([lambda q=q: b.rank_videos(q, 5) for q in queries[1:]])
    assert inner.rank_calls == 2 and inner.rank_rows == [1, 4]
    for q, (refs, _) in zip(queries[1:], got):
        np.testing.assert_array_equal(refs, inner.rank_videos(q, 5)[0])
    b.close()
