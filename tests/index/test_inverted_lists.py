"""Inverted lists over a first-stage copy (index/inverted_lists.py builds them, the engine's first
stage reads them): on rows made of real frame features the lists' ranking gives the exact top 10
while a query scans a few percent of the copy; rows that do not cluster get no lists (a verdict
kept on disk); a killed build is redone; deny lists hold, and too few eligible videos or too few
found fall back to the whole copy. Which path each ranking took is what the engine reports
(``Index.ranking_paths``); the engine's first stage equals the Python one it replaced."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine.index import ChannelSpec, Index, IndexStore, VideoRecord, first_stage, inverted_lists
from ivcr_engine.index import ranking as searcher
from ivcr_engine.corpus import Corpus

CLIPS = 6


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def build(root, rows: np.ndarray, paths: list | None = None) -> Index:
    times = np.stack([np.arange(CLIPS) * 2.0, np.arange(CLIPS) * 2.0 + 2.0], 1)
    with IndexStore(root, create=True) as store:
        store.set_settings({"clip_seconds": 2.0})
        store.ensure_channel(ChannelSpec("visual", rows.shape[1]))
        store.add_videos([VideoRecord(f"/v/{i}.mp4", f"h{i}", 12.0, times, {"visual": rows[i * CLIPS:(i + 1) * CLIPS]})
                          for i in range(len(rows) // CLIPS)])
    return opened(root, paths)


def opened(root, paths: list | None, prefault: bool = False) -> Index:
    index = Index(root, text_encoder=object(), prefault=prefault)
    index.ranking_paths = paths  # each ranked row's path, as the engine reports it
    return index


@pytest.fixture(scope="module")
def frame_rows(shared_data):
    """18,000 rows made of real EfficientNet-Lite0 features of the shared videos' frames (6 per
    second, and mirrored), as the latency benchmark's corpus is (benchmarks/synthetic_index.py):
    each a blend of two real rows plus a little noise, a video's clips often repeating their
    predecessor's pair."""
    from ivcr_engine import decode
    from ivcr_engine.models import FrameEncoder, prepare_models

    prepare_models()
    frames = FrameEncoder()
    feats = []
    for video in sorted((shared_data / "videos").iterdir()):
        pixels = decode.decode_frames(str(video), decode.Fps(6.0), size=(224, 224)).frames
        for p in (pixels, pixels[:, :, ::-1]):
            feats.append(frames.encode(frames.normalize(np.ascontiguousarray(p)))[0])
    pool = np.concatenate(feats)
    rng = np.random.default_rng(3)
    n = 3000 * CLIPS
    a, b = rng.integers(0, len(pool), n), rng.integers(0, len(pool), n)
    for i in np.flatnonzero((rng.random(n) < 0.5) & (np.arange(n) % CLIPS != 0)):
        a[i], b[i] = a[i - 1], b[i - 1]
    t = rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
    return unit(t * pool[a] + (1 - t) * pool[b] + 0.004 * rng.standard_normal((n, pool.shape[1])).astype(np.float32))


@pytest.fixture
def small_lists(monkeypatch):
    """The two-stage ranking and its lists at test scale: 100 rows a list, a shortlist of 50; the
    list the rankings' paths go to (hand it to ``build``)."""
    monkeypatch.setattr(searcher, "TWO_STAGE_MIN_ROWS", 1)
    monkeypatch.setattr(searcher, "SHORTLIST", 50)
    monkeypatch.setattr(inverted_lists, "ROWS_PER_LIST", 100)
    return []


def exact_top(index, q, k=10, deny=None):
    eligible = ~index.removed
    if deny is not None:
        eligible[deny] = False
    return Corpus({"visual": index.channels["visual"]}, index.offsets).topk_videos(
        q, k, weights={"visual": 1.0}, allow=eligible)


def ranked_by_the_whole_copy(index, q, own):
    saved = searcher.LISTS_MIN_ELIGIBLE
    searcher.LISTS_MIN_ELIGIBLE = 2.0  # the lists never serve
    try:
        return index.rank_videos(q, 10, {"visual": 1.0}, deny=[own])[0][0]
    finally:
        searcher.LISTS_MIN_ELIGIBLE = saved


def test_lists_over_real_frame_features_keep_the_exact_top10(tmp_path, frame_rows, small_lists):
    index = build(tmp_path, frame_rows, small_lists)
    lists = index.ranking.first_stage(("visual",), None).lists  # built here, its self-check included
    small_lists.clear()
    rng = np.random.default_rng(4)
    picks = rng.choice(len(frame_rows), 40, replace=False)
    recalls, whole = [], []
    for r in picks:
        own = int(r) // CLIPS
        q = {"visual": frame_rows[[r]]}
        refs, _ = index.rank_videos(q, 10, {"visual": 1.0}, deny=[own])
        truth = exact_top(index, q, deny=[own]).ids[0]
        recalls.append(len(set(refs[0]) & set(truth)) / 10)
        whole.append(set(refs[0]) == set(ranked_by_the_whole_copy(index, q, own)))
    assert lists is not None and lists.lists == 180
    assert 0 < lists.probe <= inverted_lists.MAX_PROBE_SHARE * lists.lists  # a query read <= 15 % of the copy
    assert small_lists == ["lists", "copies"] * 40  # every ranking went through them (and the copy's alone did not)
    assert np.mean(recalls) >= 0.99, np.mean(recalls)
    assert np.mean(whole) >= 0.95  # the lists lose (almost) nothing of the whole copy's ranking
    # a batch (as the micro-batcher sends) ranks each row as alone
    batch, batch_scores = index.rank_videos({"visual": frame_rows[picks[:4]]}, 10, {"visual": 1.0})
    for i, r in enumerate(picks[:4]):
        alone, alone_scores = index.rank_videos({"visual": frame_rows[[r]]}, 10, {"visual": 1.0})
        np.testing.assert_array_equal(batch[i], alone[0])
        np.testing.assert_allclose(batch_scores[i], alone_scores[0], rtol=1e-6)
    # a reopened index maps the lists it built instead of fitting them again
    fitted = []
    original = inverted_lists.spherical_kmeans
    inverted_lists.spherical_kmeans = lambda *a: fitted.append(1) or original(*a)
    try:
        again = Index(tmp_path, text_encoder=object())
        assert again.ranking.first_stage(("visual",), None).lists.probe == lists.probe and not fitted
    finally:
        inverted_lists.spherical_kmeans = original


def test_commits_grow_the_copy_and_its_lists_until_the_index_doubles(tmp_path, frame_rows, small_lists, monkeypatch):
    """A live index's first search after a commit grows the copy and its lists (first_stage.py,
    inverted_lists.py) instead of fitting them again: the earlier rows stay as they were, the added
    ones are written with the kept projection and join their nearest lists, the probe count is
    kept, the engine ranks on them as before, and the older generation's files go. An index that
    has doubled since the fit is fitted again."""
    monkeypatch.setattr(first_stage, "DEFAULT_ENERGY", 0.95)  # a projected copy: growth keeps its basis
    first = 2000 * CLIPS
    index = build(tmp_path, frame_rows[:first], small_lists)
    stage = index.ranking.first_stage(("visual",), None)
    copy, lists = stage.copies["visual"], stage.lists
    assert copy.basis is not None and lists is not None and lists.probe > 0
    values, scales = np.array(copy.values), np.array(copy.scales)
    fitted = []
    for module, name in ((first_stage, "principal_basis"), (inverted_lists, "spherical_kmeans"),
                         (inverted_lists, "_choose_probe")):
        monkeypatch.setattr(module, name, lambda *a, _f=getattr(module, name), _n=name, **k: fitted.append(_n) or _f(*a, **k))
    add(tmp_path, frame_rows[first:], first // CLIPS)
    assert index.refresh()
    grown = index.ranking.first_stage(("visual",), None)
    copy2, lists2 = grown.copies["visual"], grown.lists
    rows = len(frame_rows)
    assert not fitted and len(copy2.values) == rows
    np.testing.assert_array_equal(copy2.values[:first], values)
    np.testing.assert_array_equal(copy2.scales[:first], scales)
    np.testing.assert_array_equal(copy2.basis, copy.basis)
    stored = np.asarray(index.channels["visual"][first:], np.float32)  # (float16 on disk)
    err = np.abs(copy2.rows(slice(first, None)) - stored @ copy.basis).max(axis=1)
    assert np.all(err <= 0.501 * copy2.scales[first:])  # the kept projection, to int8 rounding
    np.testing.assert_array_equal(lists2.centroids, lists.centroids)
    assert lists2.probe == lists.probe
    np.testing.assert_array_equal(np.sort(lists2.order), np.arange(rows))
    np.testing.assert_array_equal(lists2.values, copy2.values[lists2.order])
    bounds = lists2.corpus.offsets
    list_at = np.repeat(np.arange(lists2.lists), np.diff(bounds))
    added = lists2.order >= first
    np.testing.assert_array_equal(list_at[added], inverted_lists.nearest(copy2.rows(lists2.order[added]), lists2.centroids))
    assert all(np.all(np.diff(added[a:b].astype(int)) >= 0) for a, b in zip(bounds[:-1], bounds[1:]))  # added rows last
    names = sorted(p.name for p in (tmp_path / "vectors").glob("first.*"))
    assert names and all(f".{rows}." in n for n in names), names  # the older generation is gone
    # the grown lists rank as lists fitted on all the rows do (recall of the exact top 10, the
    # engine ranking; queries among the added rows and among all)
    small_lists.clear()
    picks = np.concatenate([np.random.default_rng(8).choice(np.arange(first, rows), 30, replace=False),
                            np.random.default_rng(9).choice(rows, 30, replace=False)])
    grown_recall = recall(index, frame_rows, picks)
    assert small_lists == ["lists"] * len(picks)
    # past twice the rows the copy and its lists were fitted on: fitted again
    add(tmp_path, frame_rows[:2 * first - rows + CLIPS], rows // CLIPS)
    assert index.refresh()
    refit = index.ranking.first_stage(("visual",), None)
    assert len(refit.copies["visual"].values) == 2 * first + CLIPS
    assert set(fitted) == {"principal_basis", "spherical_kmeans", "_choose_probe"}
    names = sorted(p.name for p in (tmp_path / "vectors").glob("first.*"))
    assert all(f".{2 * first + CLIPS}." in n for n in names), names
    # lists whose files are damaged are fitted again rather than grown (and the search answers)
    (tmp_path / "vectors" / f"first.visual.lists.{2 * first + CLIPS}.order.npy").write_bytes(b"damaged")
    add(tmp_path, frame_rows[:CLIPS], 2 * first // CLIPS + 1)
    fitted.clear()
    assert index.refresh()
    again = index.ranking.first_stage(("visual",), None)
    assert again.lists is not None and fitted == ["spherical_kmeans", "_choose_probe"]
    assert index.rank_videos({"visual": frame_rows[:1]}, 10, {"visual": 1.0})[0][0][0] >= 0
    index.close()
    fresh = build(tmp_path / "fresh", frame_rows, None)  # lists fitted on the grown index's rows
    fresh_recall = recall(fresh, frame_rows, picks)
    fresh.close()
    assert grown_recall >= min(0.95, fresh_recall - 0.01), (grown_recall, fresh_recall)


def recall(index, rows, picks) -> float:
    """Mean share of the exact top 10 (own video left out) in the index's ranking of each row."""
    found = []
    for r in picks:
        own = int(r) // CLIPS
        q = {"visual": rows[[r]]}
        refs, _ = index.rank_videos(q, 10, {"visual": 1.0}, deny=[own])
        found.append(len(set(refs[0]) & set(exact_top(index, q, deny=[own]).ids[0])) / 10)
    return float(np.mean(found))


def add(root, rows: np.ndarray, first_video: int) -> None:
    times = np.stack([np.arange(CLIPS) * 2.0, np.arange(CLIPS) * 2.0 + 2.0], 1)
    with IndexStore(root) as store:
        store.add_videos([VideoRecord(f"/v/{first_video + i}.mp4", f"h{first_video + i}", 12.0, times,
                                      {"visual": rows[i * CLIPS:(i + 1) * CLIPS]}) for i in range(len(rows) // CLIPS)])


def test_a_view_older_than_the_copies_ranks_on_their_leading_rows(tmp_path, frame_rows, small_lists, monkeypatch):
    """A writer that grows the copy after its commit removes the generation an older view would
    read. That view, Python's and its engine handle alike, then ranks on the later generation's
    leading rows, which are its own rows as they were: the same answers as its own generation
    gave, with nothing fitted or written again, and no exact scan of every row."""
    monkeypatch.setattr(first_stage, "DEFAULT_ENERGY", 0.95)
    monkeypatch.setattr(searcher, "LISTS_MIN_ELIGIBLE", 2.0)  # the copies whole: the same path for both views
    first = 2000 * CLIPS
    index = build(tmp_path, frame_rows[:first], small_lists)
    w, q = {"visual": 1.0}, {"visual": frame_rows[[3, 4000, 9000]]}
    expected = index.rank_videos(q, 10, w)  # its own generation, built and mapped
    older = opened(tmp_path, [])  # another view of the same snapshot, its stage not loaded yet
    add(tmp_path, frame_rows[first:], first // CLIPS)
    writer = opened(tmp_path, None)
    writer.rank_videos(q, 10, w)  # grows the copy to the new rows and removes the generation before
    writer.close()
    folder = tmp_path / "vectors"
    assert first_stage.generations(folder, "visual") == [len(frame_rows)]
    fitted = []
    for module, name in ((first_stage, "principal_basis"), (inverted_lists, "spherical_kmeans")):
        monkeypatch.setattr(module, name, lambda *a, _f=getattr(module, name), _n=name, **k: fitted.append(_n) or _f(*a, **k))
    names = sorted(p.name for p in folder.glob("first.*"))
    got = older.rank_videos(q, 10, w)
    assert older.ranking_paths == ["copies"] * 3 and older.ranking.first_stage(("visual",), None).copies["visual"].borrowed
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert not fitted and sorted(p.name for p in folder.glob("first.*")) == names
    assert older.refresh() and older.ranking.first_stage(("visual",), None).copies["visual"].borrowed is False
    older.close()
    index.close()


def test_rows_that_do_not_cluster_get_no_lists_and_the_verdict_is_kept(tmp_path, small_lists, monkeypatch):
    rows = unit(np.random.default_rng(6).standard_normal((2400, 48)))
    index = build(tmp_path, rows, small_lists)
    q = {"visual": rows[[5, 900]]}
    refs, scores = index.rank_videos(q, 10, {"visual": 1.0})
    assert index.ranking.first_stage(("visual",), None).lists is None and small_lists == ["copies"] * 2
    np.testing.assert_array_equal(refs, exact_top(index, q).ids)
    meta = inverted_lists.paths(tmp_path / "vectors", "visual", len(rows))["meta"]
    assert meta.exists() and not list((tmp_path / "vectors").glob("first.visual.lists.*.npy"))
    monkeypatch.setattr(inverted_lists, "spherical_kmeans", lambda *a: pytest.fail("the verdict was not kept"))
    assert Index(tmp_path, text_encoder=object()).ranking.first_stage(("visual",), None).lists is None


def test_a_killed_build_is_redone(tmp_path, frame_rows, small_lists):
    rows = frame_rows
    index = build(tmp_path, rows)
    part = inverted_lists.paths(tmp_path / "vectors", "visual", len(rows))
    assert index.ranking.first_stage(("visual",), None).lists is not None
    part["meta"].unlink()  # as if killed after the permuted copy, before the self-check's verdict
    part["order"].write_bytes(b"torn")
    again = Index(tmp_path, text_encoder=object()).ranking.first_stage(("visual",), None).lists
    assert again is not None and part["meta"].exists()
    np.testing.assert_array_equal(np.sort(again.order), np.arange(len(rows)))


def test_deny_lists_hold_and_rankings_fall_back_when_the_lists_cannot_serve(tmp_path, frame_rows, small_lists,
                                                                            monkeypatch):
    index = build(tmp_path, frame_rows, small_lists)
    index.ranking.first_stage(("visual",), None)
    small_lists.clear()
    q = {"visual": frame_rows[[77]]}
    best = exact_top(index, q).ids[0]
    deny = best[:3].tolist()
    refs, _ = index.rank_videos(q, 10, {"visual": 1.0}, deny=deny)
    assert small_lists == ["lists"] and not set(deny) & set(refs[0])
    assert len(set(refs[0]) & set(exact_top(index, q, deny=deny).ids[0])) >= 9
    # most videos ineligible: the lists' over-fetch could not fill a shortlist; the whole copy ranks
    small_lists.clear()
    allow = np.arange(0, 3000, 3)
    refs, _ = index.rank_videos(q, 10, {"visual": 1.0}, allow=allow.tolist())
    assert small_lists == ["copies"]
    deny_rest = np.setdiff1d(np.arange(3000), allow)
    np.testing.assert_array_equal(refs, exact_top(index, q, deny=deny_rest).ids)
    # the probed lists hold fewer than k videos: that row is ranked from the whole copy
    stage = index.ranking.first_stage(("visual",), None)
    meta = inverted_lists.paths(tmp_path / "vectors", "visual", len(frame_rows))["meta"]
    meta.write_text(meta.read_text().replace(f'"probe": {stage.lists.probe}', '"probe": 1'))  # one list a query
    monkeypatch.setattr(inverted_lists, "CLIPS_PER_SHORTLISTED_VIDEO", 1)  # 50 clips for a shortlist of 50
    stage.lists.probe = 1
    found = stage.lists.shortlist(stage.copies["visual"].project(q["visual"]), 1.0, 50, index.offsets,
                                  np.ones(3000, bool))
    assert len(found) < 50  # the clips of a video share lists: fewer than 50 videos
    index = opened(tmp_path, small_lists)
    small_lists.clear()
    refs, _ = index.rank_videos(q, 50, {"visual": 1.0})
    assert small_lists == ["copies"]  # the lists were read and could not serve
    np.testing.assert_array_equal(refs, ranked_by_the_whole_copy_k(index, q, 50))


def ranked_by_the_whole_copy_k(index, q, k):
    saved = searcher.LISTS_MIN_ELIGIBLE
    searcher.LISTS_MIN_ELIGIBLE = 2.0
    try:
        return index.rank_videos(q, k, {"visual": 1.0})[0]
    finally:
        searcher.LISTS_MIN_ELIGIBLE = saved


def test_the_engines_first_stage_matches_the_python_one(tmp_path, frame_rows, small_lists, monkeypatch):
    """The engine's first stage (csrc/engine/first_stage.cpp) over the copies Python builds gives
    the final ranking of the Python first stage it replaced (tests/engine/reference_ranking.py)
    followed by the exact stage, on every path: inverted lists, a whole scan of the copy (lists
    that cannot serve; k past the shortlist), and a coarse copy in front; a batch as its rows."""
    from ivcr_engine.index import first_stage

    from ..engine.reference_ranking import reference_rank, reference_shortlists

    index = build(tmp_path, frame_rows, small_lists)
    w = {"visual": 1.0}
    qs = frame_rows[np.random.default_rng(8).choice(len(frame_rows), 12, replace=False)]

    def check(index, k, deny=None):
        eligible = index._eligible(index._view, None, deny)
        short = reference_shortlists(index.ranking, {"visual": qs}, w, k, eligible)
        want = reference_rank(index.mapped, None, {"visual": qs}, w, k, eligible, short)
        got = index.rank_videos({"visual": qs}, k, w, deny=deny)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
        alone = index.rank_videos({"visual": qs[3:4]}, k, w, deny=deny)[0]
        np.testing.assert_array_equal(alone, got[0][3:4])

    check(index, 10)
    assert set(small_lists) == {"lists"}
    small_lists.clear()
    check(index, 10, deny=list(range(0, 3000, 2)))  # half the videos ineligible: no lists
    check(index, 60)                                 # k past the shortlist: the whole copy
    assert set(small_lists) == {"copies"}
    for f in (tmp_path / "vectors").glob("first.*"):
        f.unlink()
    monkeypatch.setattr(first_stage, "DEFAULT_ENERGY", 0.95)  # a projected copy (64+ dims), wide enough for a coarse one
    monkeypatch.setattr(first_stage, "COARSE_MIN_WIDTH", 32)
    monkeypatch.setattr(first_stage, "COARSE_DIMS", 16)
    monkeypatch.setattr(first_stage, "COARSE_SHORTLIST", 100)
    monkeypatch.setattr(searcher, "LISTS_MIN_ELIGIBLE", 2.0)
    index = opened(tmp_path, small_lists)
    small_lists.clear()
    check(index, 10)
    assert index.ranking.first_stage(("visual",), None).coarse is not None and set(small_lists) == {"coarse"}
    # prefaulted, as `ivcr serve` opens it: without lists, the coarse copy and the copy behind it
    # are read from the engine's resident copies of them (Mapping::resident)
    index = opened(tmp_path, small_lists, prefault=True)
    small_lists.clear()
    check(index, 10)
    check(index, 60)
    assert set(small_lists) == {"coarse"}


def test_lists_over_a_whitened_int4_copy(tmp_path, frame_rows, small_lists):
    """Lists are built over whatever copy the first stage keeps, a packed int4 one too: stored in
    the copy's own format, checked with its rows asked as queries (FirstStageCopy.as_queries), and
    their shortlists hold the whole int4 copy's top 10 for real rows asked as queries."""
    from ivcr_engine.index import first_stage

    offsets = np.arange(0, len(frame_rows) + 1, CLIPS, dtype=np.int64)
    sample = frame_rows[::3]
    mean, vals, vecs = first_stage._spectrum(sample, centred=True)
    enc = first_stage.whitened_int4(mean, vals, vecs, len(sample), 128, 0.5)
    copy = first_stage.load_or_build(tmp_path, "visual", len(frame_rows), frame_rows.shape[1],
                                     lambda sel: frame_rows[sel], fit=lambda: enc)
    assert copy.values.dtype == np.uint8 and copy.values.shape == (len(frame_rows), 64)
    lists = inverted_lists.load_or_build(tmp_path, "visual", copy, offsets, 50)
    assert lists is not None and lists.values.dtype == np.uint8
    assert 0 < lists.probe <= inverted_lists.MAX_PROBE_SHARE * lists.lists
    whole = Corpus({"c": (copy.values, copy.scales)}, offsets)
    eligible = np.ones(len(offsets) - 1, bool)
    found = []
    for r in np.random.default_rng(5).choice(len(frame_rows), 40, replace=False):
        q = copy.project(frame_rows[[r]])
        truth = whole.topk_videos({"c": q}, 10).ids[0]
        found.append(len(set(truth) & set(lists.shortlist(q, 1.0, 50, offsets, eligible))) / 10)
    assert np.mean(found) >= 0.99, np.mean(found)
