"""The folded text rows in float16 (index/folded_rows.py) and the engine's pre-rank on them: a
staged text query's answers are the same, video for video and score for score, as the exact
stage's over the whole shortlist; the pre-rank really cuts what the exact stage reads; the
rounding bound holds with the engine's own kernels; the rows grow with the index, are left out
where float16 cannot hold them, and `ivcr check` knows them."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine.corpus import Corpus
from ivcr_engine.index import ChannelSpec, Index, IndexStore, VideoRecord
from ivcr_engine.index import folded_rows
from ivcr_engine.index import ranking as ranking_module
from ivcr_engine.index.check import check_index
from ivcr_engine.index.store import IndexDamaged

D = 48        # the concept dims; speech and subtitle have one more (presence)
CLIPS = 8
WEIGHTS = {"concept": 1.0, "speech": 0.7, "subtitle": 1.3}
TAG = "text-concept1-speech0.7-subtitle1.3"


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def text_rows(rng, n_videos: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Clips of a few shared topics plus a little noise, speech on most clips and subtitles on
    some; videos come in fours of near twins (the same clips as stored, three values a row one
    float16 step apart), whose scores differ by less than the folded rows' rounding of them: what
    the bound has to settle."""
    topics = _unit(rng.standard_normal((12, D)))
    n = n_videos * CLIPS
    pick = rng.integers(0, len(topics), n)
    out = {"concept": _unit(topics[pick] + 0.02 * rng.standard_normal((n, D)))}
    for name, share in (("speech", 0.8), ("subtitle", 0.4)):
        rows = np.zeros((n, D + 1), np.float32)
        has = rng.random(n) < share
        rows[has, :D] = _unit(topics[pick[has]] + 0.01 * rng.standard_normal((int(has.sum()), D)))
        rows[has, D] = 1.0
        out[name] = rows
    first = (np.arange(n) // CLIPS // 4 * 4) * CLIPS + np.arange(n) % CLIPS  # the clip of the four's first video
    for name, rows in out.items():
        presence = rows[first, D:]
        twins = (scale * rows[first]).astype(np.float16)
        cols = rng.integers(0, D, (n, 3))
        step = np.where(rng.random((n, 3)) < 0.5, -np.inf, np.inf).astype(np.float16)
        at = (np.arange(n)[:, None], cols)
        twins[at] = np.where(twins[at] != 0, np.nextafter(twins[at], step), 0)
        rows[:, :D] = twins[:, :D]
        rows[:, D:] = presence
    return out


def add(root, rows: dict[str, np.ndarray], first: int, n_videos: int, create: bool = False) -> None:
    times = np.stack([np.arange(CLIPS) * 2.0, np.arange(CLIPS) * 2.0 + 2.0], 1)
    with IndexStore(root, create=create) as store:
        if create:
            store.set_settings({"clip_seconds": 2.0})
            store.ensure_channel(ChannelSpec("concept", D))
            store.ensure_channel(ChannelSpec("speech", D + 1))
            store.ensure_channel(ChannelSpec("subtitle", D + 1))
        store.add_videos([VideoRecord(f"/v/{i}.mp4", f"h{i}", 2.0 * CLIPS, times,
                                      {c: r[(i - first) * CLIPS:(i - first + 1) * CLIPS] for c, r in rows.items()})
                          for i in range(first, first + n_videos)])


def queries(rng, n: int) -> dict[str, np.ndarray]:
    """Text queries as the query encoder gives them: one embedding in every text channel, the
    presence dim a baseline (calibrated queries are long: |q| of several units)."""
    q = 4.0 * _unit(rng.standard_normal((n, D)))
    presence = np.concatenate([q, np.full((n, 1), -2.5, np.float32)], axis=1)
    return {"concept": q, "speech": presence, "subtitle": presence}


@pytest.fixture
def staged(monkeypatch):
    monkeypatch.setattr(ranking_module, "TWO_STAGE_MIN_ROWS", 1)
    monkeypatch.setattr(ranking_module, "SHORTLIST", 60)


def vectors(root):
    return root / "vectors"


def answers(root, q, k, **kw):
    index = Index(root, text_encoder=object())
    try:
        index.ranking_paths = paths = []
        ids, scores = index.rank_videos(q, k, WEIGHTS, **kw)
        return ids, scores, paths
    finally:
        index.close()


def without_folded_rows(root, q, k, **kw):
    """The answers of the exact stage over the whole shortlist: the folded rows moved aside (the
    search writes them again; a handle opened first scans the copies that are there)."""
    aside = root.parent / "aside"
    aside.mkdir(exist_ok=True)
    moved = list(vectors(root).glob(f"first.{TAG}.folded.*"))
    for p in moved:
        p.rename(aside / p.name)
    index = Index(root, text_encoder=object())
    try:
        index.ranking.folded_rows = lambda folded: False  # (what an index without them gives)
        return index.rank_videos(q, k, WEIGHTS, **kw)
    finally:
        index.close()
        for p in moved:
            (aside / p.name).rename(p)


def test_a_pre_ranked_shortlist_gives_the_exact_stage_s_answers(tmp_path, staged):
    """Staged text queries, alone and batched, with filters and several k: the same refs and
    bit-identical scores with the folded rows as without them."""
    root = tmp_path / "idx"
    rng = np.random.default_rng(3)
    add(root, text_rows(rng, 400), 0, 400, create=True)
    q = queries(rng, 32)
    rows = 400 * CLIPS
    for k, kw in ((10, {}), (1, {}), (25, {}), (10, {"deny": list(range(0, 400, 3))}), (5, {"allow": list(range(150))})):
        ids, scores, paths = answers(root, q, k, **kw)
        assert set(paths) <= {"copies", "lists", "coarse"} and len(paths) == 32  # staged
        values = np.load(vectors(root) / f"first.{TAG}.folded.{rows}.values.npy", mmap_mode="r")
        assert values.dtype == np.float16 and values.shape == (rows, D + 1)
        want_ids, want_scores = without_folded_rows(root, q, k, **kw)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(scores, want_scores)
        one_ids, one_scores, _ = answers(root, {c: v[[5]] for c, v in q.items()}, k, **kw)
        np.testing.assert_array_equal(one_ids[0], ids[5])
        np.testing.assert_array_equal(one_scores[0], scores[5])


def test_a_ranking_says_where_its_time_went(tmp_path, staged):
    """ivcr_results_stage_ms: a staged text ranking spends time in its first stage, its pre-rank
    on the folded rows and its exact stage, none in a lexical join or a word lookup it did not run
    (the lexical part's own test: test_lexical_engine.py), and no more in
    all of them than the call took; an exact ranking (below the staged size) only in its exact
    stage; an unknown part is refused, naming the parts."""
    import ctypes
    import time

    from ivcr_engine.errors import InvalidArgument
    from ivcr_engine.native import NativeIndex, _check, lib

    root = tmp_path / "idx"
    rng = np.random.default_rng(5)
    add(root, text_rows(rng, 200), 0, 200, create=True)
    q = queries(rng, 4)
    index = Index(root, text_encoder=object())
    index.rank_videos(q, 10, WEIGHTS)  # writes the copy and the folded rows
    index.close()
    with NativeIndex(root) as nat:
        times: list = []
        t0 = time.perf_counter()
        nat.rank_vectors(q, 10, weights=WEIGHTS, stage=(1, 60, 8000, 0.95, 8), times=times)
        wall = (time.perf_counter() - t0) * 1000
        (staged_ms,) = times
        assert set(staged_ms) == {"words", "first", "prerank", "exact", "lexical"}
        assert staged_ms["first"] > 0 and staged_ms["prerank"] > 0 and staged_ms["exact"] > 0
        assert staged_ms["lexical"] == staged_ms["words"] == 0 and sum(staged_ms.values()) <= wall
        times.clear()
        nat.rank_vectors(q, 10, weights=WEIGHTS, stage=(10**9, 60, 8000, 0.95, 8), times=times)
        assert times[0]["first"] == times[0]["prerank"] == 0 and times[0]["exact"] > 0
        L = lib()
        opts, out, rows = ctypes.c_void_p(), (ctypes.c_void_p * 4)(), nat._queries(q, None)
        _check(L.ivcr_search_options_new(ctypes.byref(opts)))
        try:
            _check(L.ivcr_search_vectors_batch(nat._h, rows, 10, opts, out))
            with pytest.raises(InvalidArgument, match='"exact", "lexical" or "words", got "scan"'):
                _check(L.ivcr_results_stage_ms(out[0], b"scan", ctypes.byref(ctypes.c_double())))
        finally:
            for r in out:
                L.ivcr_results_free(r)
            L.ivcr_search_options_free(opts)
            L.ivcr_queries_free(rows)


def test_the_exact_stage_reads_only_what_the_folded_rows_leave_in_reach(tmp_path, staged):
    """Folded rows that lie (another index's rows, their norms near zero) change the answers: the
    exact stage ranked only the few videos they left in reach, not the whole shortlist."""
    root = tmp_path / "idx"
    rng = np.random.default_rng(4)
    add(root, text_rows(rng, 300), 0, 300, create=True)
    q = queries(rng, 8)
    ids, scores, _ = answers(root, q, 10)
    rows = 300 * CLIPS
    values = vectors(root) / f"first.{TAG}.folded.{rows}.values.npy"
    lie = np.lib.format.open_memmap(values, mode="r+")
    lie[:] = np.random.default_rng(9).standard_normal(lie.shape).astype(np.float16)
    lie.flush()
    del lie
    np.save(vectors(root) / f"first.{TAG}.folded.{rows}.norms.npy", np.full(rows, 1e-6, np.float32))
    lied_ids, _, _ = answers(root, q, 10)
    assert (lied_ids != ids).any(axis=1).mean() > 0.5
    folded_rows.part(vectors(root), TAG, rows, "norms").unlink()  # incomplete rows: not read
    again_ids, again_scores, _ = answers(root, q, 10)  # (and written again, true)
    np.testing.assert_array_equal(again_ids, ids)
    np.testing.assert_array_equal(again_scores, scores)


@pytest.mark.parametrize("scale", [1.0, 300.0, 1e-5])
def test_a_clip_s_folded_score_is_within_its_bound_of_the_exact_one(tmp_path, scale):
    """With the engine's kernels (every clip scored, float16 rows): |folded - exact| <= 2^-10 |q|
    norms[r] + 2^-24 sum|q| (csrc/engine/ranking.h), for unit rows, long ones and ones of float16's
    subnormal range."""
    rng = np.random.default_rng(5)
    rows = text_rows(rng, 200, scale)
    n = len(rows["concept"])
    f = np.zeros((n, D + 1), np.float32)
    norms = np.zeros(n, np.float32)
    for c, w in WEIGHTS.items():
        r = rows[c].astype(np.float16).astype(np.float32)  # the index stores float16
        f[:, :r.shape[1]] += w * r
        norms += abs(w) * np.linalg.norm(r, axis=1)
    q = queries(rng, 6)
    exact = Corpus({c: rows[c].astype(np.float16) for c in WEIGHTS}).topk_clips(q, n, weights=WEIGHTS)
    folded = Corpus({"f": f.astype(np.float16)}).topk_clips({"f": q["speech"]}, n)
    for b in range(6):
        e = np.empty(n, np.float32)
        e[exact.ids[b]] = exact.scores[b]
        a = np.empty(n, np.float32)
        a[folded.ids[b]] = folded.scores[b]
        qf = q["speech"][b].astype(np.float64)
        bound = 2.0 ** -10 * np.linalg.norm(qf) * norms + 2.0 ** -24 * np.abs(qf).sum()
        assert (np.abs(a.astype(np.float64) - e) <= bound).all()
        assert np.abs(a - e).max() > 0 or scale != 1.0  # (the rounding is there to bound)


def test_the_folded_rows_grow_with_the_index(tmp_path, staged):
    """A commit's rows are folded onto the previous generation's (kept as they are, the old
    files removed), and the result is what a fresh build writes; a handle opened before the
    commit still answers, from the new generation's leading rows."""
    root = tmp_path / "idx"
    rng = np.random.default_rng(6)
    add(root, text_rows(rng, 250), 0, 250, create=True)
    q = queries(rng, 4)
    before = answers(root, q, 10)
    old = Index(root, text_encoder=object())  # its snapshot: 250 videos; it searches after the commit
    n0 = 250 * CLIPS
    first = np.load(vectors(root) / f"first.{TAG}.folded.{n0}.values.npy")
    add(root, text_rows(rng, 50), 250, 50)
    answers(root, q, 10)
    n1 = 300 * CLIPS
    assert folded_rows.generations(vectors(root), TAG) == [n1]
    grown = np.load(vectors(root) / f"first.{TAG}.folded.{n1}.values.npy")
    np.testing.assert_array_equal(grown[:n0], first)
    for p in vectors(root).glob(f"first.{TAG}.folded.*"):
        p.unlink()
    answers(root, q, 10)
    np.testing.assert_array_equal(np.load(vectors(root) / f"first.{TAG}.folded.{n1}.values.npy"), grown)
    again = old.rank_videos(q, 10, WEIGHTS)  # from the new generation's leading rows (its own is gone)
    np.testing.assert_array_equal(again[0], before[0])
    np.testing.assert_array_equal(again[1], before[1])
    old.close()


def test_rows_float16_cannot_hold_are_not_folded(tmp_path, staged, monkeypatch):
    """Weights that fold rows past float16's range: no folded rows are written (nothing half
    done), and the exact stage answers over the whole shortlist (here every video: the exact
    ranking)."""
    monkeypatch.setattr(ranking_module, "SHORTLIST", 200)
    root = tmp_path / "idx"
    rng = np.random.default_rng(7)
    add(root, text_rows(rng, 120), 0, 120, create=True)
    q = queries(rng, 3)
    heavy = {"concept": 1.0, "speech": 5e4, "subtitle": 5e4}
    index = Index(root, text_encoder=object())
    index.ranking_paths = paths = []
    got = index.rank_videos(q, 10, heavy)
    assert paths == ["copies"] * 3 and not list(vectors(root).glob("first.*.folded.*"))
    want = Corpus({c: np.asarray(index.channels[c]) for c in heavy}, np.arange(121) * CLIPS).topk_videos(
        q, 10, weights=heavy)
    index.close()
    np.testing.assert_array_equal(got[0], want.ids)


def test_check_knows_the_folded_rows(tmp_path, staged):
    """`ivcr check` takes complete folded rows as a valid cache, reports damaged ones (which a
    search refuses with a clear error, not a wrong answer), and the repair writes them again."""
    root = tmp_path / "idx"
    rng = np.random.default_rng(8)
    add(root, text_rows(rng, 100), 0, 100, create=True)
    answers(root, queries(rng, 2), 5)
    rows = 100 * CLIPS
    assert check_index(root).ok, check_index(root).problems
    norms = folded_rows.part(vectors(root), TAG, rows, "norms")
    np.save(norms, np.zeros(rows - 1, np.float32))
    with pytest.raises(IndexDamaged, match=r"folded\.\d+\.values\.npy/\.norms\.npy do not hold .* check --repair"):
        answers(root, queries(rng, 2), 5)
    report = check_index(root)
    assert any("folded" in p and "float16 rows" in p for p in report.problems), report.problems
    fixed = check_index(root, repair=True)
    assert any("rebuilt" in r for r in fixed.repaired), fixed.repaired
    assert np.load(norms).shape == (rows,) and check_index(root).ok
