"""The rules that snap a grid span to the text lines matching a query (moment_edges.py), on
hand-made lines and scores: who may start a match, who joins it, what stays on the grid."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine.index.moment_edges import LEAD, MATCH_ABOVE_CHANCE, NEAR_BEST, best_line, line_scores, snap_to_lines

CHANCE = 0.15
MATCH = CHANCE + MATCH_ABOVE_CHANCE
VIDEO = (0.0, 60.0)
LINES = [("speech", 1.0, 4.0, "a"), ("speech", 4.3, 7.9, "b"), ("speech", 8.2, 11.0, "c"),
         ("speech", 12.2, 16.2, "d"), ("speech", 16.5, 19.0, "e")]


def test_the_best_matching_line_inside_the_span_gives_the_edges():
    scores = np.array([0.1, 0.2, 0.1, 0.8, 0.2], np.float32)
    assert snap_to_lines(12.0, 18.0, LINES, scores, CHANCE, VIDEO) == (12.2, 16.2)


def test_neighbours_of_the_same_source_join_while_they_score_near_the_best():
    scores = np.array([0.1, 0.75, 0.8, 0.1, 0.72], np.float32)  # b and c: one sentence split in two
    assert snap_to_lines(4.0, 12.0, LINES, scores, CHANCE, VIDEO) == (4.3, 11.0)
    # e scores near the best but d (between) does not: the moment does not jump over d
    assert snap_to_lines(4.0, 20.0, LINES, scores, CHANCE, VIDEO) == (4.3, 11.0)
    far = np.array([0.1, 0.8 - NEAR_BEST - 0.01, 0.8, 0.1, 0.1], np.float32)
    assert snap_to_lines(4.0, 12.0, LINES, far, CHANCE, VIDEO) == (8.2, 11.0)


def test_no_line_above_the_match_level_keeps_the_grid():
    scores = np.array([0.1, 0.2, MATCH - 0.01, 0.2, 0.1], np.float32)
    assert snap_to_lines(0.0, 20.0, LINES, scores, CHANCE, VIDEO) is None
    assert snap_to_lines(0.0, 20.0, LINES, np.full(5, np.nan, np.float32), CHANCE, VIDEO) is None
    assert snap_to_lines(0.0, 20.0, [], np.zeros(0, np.float32), CHANCE, VIDEO) is None


def test_a_line_only_near_the_span_may_join_a_match_but_never_starts_one():
    scores = np.array([0.1, 0.1, 0.1, 0.9, 0.85], np.float32)
    assert snap_to_lines(8.0, 12.0, LINES, scores, CHANCE, VIDEO) is None  # d, e do not overlap 8-12
    assert snap_to_lines(14.0, 16.0, LINES, scores, CHANCE, VIDEO) == (12.2, 19.0)


def test_other_sources_do_not_join_and_ties_go_to_the_earlier_line():
    lines = [("subtitle", 12.0, 14.0, "d1"), ("speech", 12.2, 16.2, "d"), ("subtitle", 14.0, 16.4, "d2")]
    scores = np.array([0.6, 0.8, 0.75], np.float32)
    assert snap_to_lines(12.0, 18.0, lines, scores, CHANCE, VIDEO) == (12.2, 16.2)
    tie = np.array([0.8, 0.8, 0.1], np.float32)
    assert snap_to_lines(12.0, 18.0, lines, tie, CHANCE, VIDEO) == (12.0, 14.0)


def test_edges_stay_inside_the_video_and_the_window():
    scores = np.array([0.1, 0.1, 0.1, 0.8, 0.1], np.float32)
    assert snap_to_lines(12.0, 14.0, LINES, scores, CHANCE, (0.0, 13.0)) == (12.2, 13.0)
    assert snap_to_lines(14.0, 16.0, LINES, scores, CHANCE, (14.0, 60.0)) == (14.0, 16.2)
    assert snap_to_lines(12.0, 14.0, LINES, scores, CHANCE, (16.5, 60.0)) is None  # nothing left inside


def test_line_scores_use_each_source_channels_query_and_weight():
    rng = np.random.default_rng(0)
    q = rng.standard_normal(8).astype(np.float32)
    q /= np.linalg.norm(q)
    v = [rng.standard_normal(8).astype(np.float32) for _ in range(3)]
    v = [x / np.linalg.norm(x) for x in v]
    queries = {"speech": np.append(q, -CHANCE)[None], "concept": q[None]}  # speech rows carry presence
    lines = [("speech", 0, 1, "x"), ("subtitle", 1, 2, "y"), ("speech", 2, 3, "z")]
    got = line_scores(queries, {"speech": 1.0, "concept": 1.0}, lines, [v[0], v[1], None])
    np.testing.assert_allclose(got[0], float(q @ v[0]), atol=1e-6)
    assert np.isnan(got[1]) and np.isnan(got[2])  # no subtitle query; no stored vector
    assert np.isnan(line_scores(queries, {"speech": 0.0}, lines[:1], v[:1])).all()  # a channel weighed 0


def test_mismatched_scores_are_an_error():
    with pytest.raises(ValueError, match="2 scores for 5 lines"):
        snap_to_lines(0.0, 10.0, LINES, np.zeros(2, np.float32), CHANCE, VIDEO)


def test_with_no_match_in_the_span_the_one_line_that_stands_out_answers():
    """best_line (issue 23: paraphrases inside a video): above chance but below the match level,
    a line answers only when it leads every other line; flat evidence keeps the grid (None)."""
    weak = np.array([0.05, CHANCE + 0.04, 0.1, CHANCE + 0.04 - LEAD - 0.005, np.nan], np.float32)
    assert snap_to_lines(30.0, 40.0, LINES, weak, CHANCE, VIDEO) is None  # nothing in that span matches
    assert best_line(LINES, weak, CHANCE, VIDEO) == (4.3, 7.9)
    flat = weak.copy()
    flat[3] = weak[1] - LEAD / 2  # two lines about as good: no answer among them
    assert best_line(LINES, flat, CHANCE, VIDEO) is None
    below = np.array([0.05, CHANCE - 0.01, 0.1, 0.0, 0.0], np.float32)  # what unrelated sentences reach
    assert best_line(LINES, below, CHANCE, VIDEO) is None
    assert best_line(LINES, np.full(5, np.nan, np.float32), CHANCE, VIDEO) is None
    assert best_line(LINES, weak, CHANCE, (5.0, 60.0)) == (5.0, 7.9)  # clipped to the window
    assert best_line(LINES, weak, CHANCE, (8.0, 60.0)) is None        # or nothing left of it
    with pytest.raises(ValueError, match="5 lines"):
        best_line(LINES, weak[:3], CHANCE, VIDEO)
