"""The index protocol on one index folder: batched encode/rank equal one query at a time, padded
(B, k) results, moments inside a window, evidence and moment vectors, clear errors on bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.index import Index, VideoIndex

QUERIES = ["a parrot on a perch", "a space telescope in a clean room", "a dog walking"]


@pytest.fixture(scope="module")
def index(shared_index):
    return Index.open(shared_index[0])


def test_index_implements_the_protocol(index):
    assert isinstance(index, VideoIndex)
    assert index.num_refs() == len(index) == 8
    info = index.video(0)
    assert info.ref == 0 and Path(info.path).is_file() and info.duration > 0 and not info.removed
    assert info.video_id == str(index.videos[0]["id"])


def test_batched_ranking_equals_one_query_at_a_time(index):
    q = index.encode_queries(QUERIES)
    assert all(v.shape[0] == 3 and v.dtype == np.float32 for c, v in q.items() if c != "lexical")
    assert q["lexical"].tolist() == [[t] for t in QUERIES]  # the lexical channel's rows are the texts
    refs, scores = index.rank_videos(q, 20)
    assert refs.shape == scores.shape == (3, 20)
    assert (refs[:, 8:] == -1).all() and np.isneginf(scores[:, 8:]).all()  # 8 videos: padded
    for b, text in enumerate(QUERIES):
        one = index.encode_queries([text])
        for c in q:
            if c == "lexical":
                assert one[c][0] == q[c][b]
            else:
                np.testing.assert_allclose(one[c][0], q[c][b], atol=1e-5)
        r1, s1 = index.rank_videos(one, 20)
        np.testing.assert_array_equal(r1[0], refs[b])
        np.testing.assert_allclose(s1[0], scores[b], atol=1e-5)
    assert Path(index.video(int(refs[0, 0])).path).name == "cockatoo.mp4"
    # the one-shot search is built on the same ranking
    hits = index.search(QUERIES[1], k=3)
    assert [h.video_index for h in hits] == refs[1, :3].tolist()


def test_allow_deny_apply_to_every_row(index):
    q = index.encode_queries(QUERIES[:2])
    refs, _ = index.rank_videos(q, 5, allow=[1, 2, 3], deny=[2])
    for row in refs:
        assert set(row[row >= 0].tolist()) == {1, 3}


def test_moments_windows_evidence_and_vectors(index):
    nasa = next(r for r in range(index.num_refs()) if index.video(r).path.endswith("nasa_13013.mp4"))
    q = index.encode_queries(["when do they mention the largest cleanrooms in the world?"])
    best = index.best_moments(q, nasa, top=2)
    assert 1 <= len(best) <= 2 and best[0].video == nasa and best[0].start < 8.35 and best[0].end > 4.26
    later = index.best_moments(q, nasa, window=(best[0].end, float("inf")))
    assert later and later[0].start >= best[0].end - 1e-6
    ev = index.evidence(nasa, best[0].start, best[0].end)
    assert any("cleanrooms" in text for _, _, _, text in ev.lines)
    v = index.moment_vector(nasa, best[0].start, best[0].end)
    assert v.shape == (1, index.channels["visual"].shape[1]) and abs(np.linalg.norm(v) - 1) < 1e-5


def test_bad_input_is_a_clear_error(index):
    with pytest.raises(ValueError, match="empty"):
        index.encode_queries(["  "])
    with pytest.raises(TypeError, match="sequence of strings"):
        index.encode_queries("one string")
    q = index.encode_queries(["a dog"])
    with pytest.raises(ValueError, match="no video with ref 99"):
        index.rank_videos(q, 5, deny=[99])
    with pytest.raises(TypeError, match="ref is an int"):
        index.video("3")
    with pytest.raises(ValueError, match="k must be"):
        index.rank_videos(q, 0)
    with pytest.raises(ValueError, match="no channel"):
        index.rank_videos({"nope": np.ones((1, 4), np.float32)}, 5)
    with pytest.raises(ValueError, match="one query"):
        index.best_moments(index.encode_queries(["a", "b"]), 0)
    with pytest.raises(ValueError, match="batch size"):
        index.rank_videos({"concept": q["concept"], "speech": np.vstack([q["speech"]] * 2)}, 5)
