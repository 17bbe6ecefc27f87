"""Compact first-stage copies: the projection is chosen from the rows' own spectrum, copies
survive a reopen and a killed build, and on real encoder outputs the projected first stage keeps
the exact scan's top 10 in its shortlist."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ivcr_engine.models.registry import TEXT_MODELS
from ivcr_engine.index import first_stage
from ivcr_engine.search import Corpus, quantize_int8


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_isotropic_rows_get_no_projection():
    rows = unit(np.random.default_rng(0).standard_normal((4000, 384)))
    assert first_stage.principal_basis(rows) is None


def test_low_rank_rows_get_a_small_orthonormal_basis():
    rng = np.random.default_rng(1)
    rows = unit(rng.standard_normal((4000, 20)) @ rng.standard_normal((20, 384)) + 0.01 * rng.standard_normal((4000, 384)))
    basis = first_stage.principal_basis(rows)
    assert basis is not None and basis.shape == (384, 32)
    np.testing.assert_allclose(basis.T @ basis, np.eye(32), atol=1e-5)
    kept = np.linalg.norm(rows @ basis, axis=1) ** 2
    assert kept.mean() >= first_stage.DEFAULT_ENERGY


def test_copies_are_cached_and_a_killed_build_is_redone(tmp_path):
    rng = np.random.default_rng(2)
    rows = unit(rng.standard_normal((3000, 8)) @ rng.standard_normal((8, 256)))
    calls = []

    def read(sel):
        calls.append(sel)
        return rows[sel]

    copy = first_stage.load_or_build(tmp_path, "visual", len(rows), 256, read)
    assert copy.basis is not None and copy.values.dtype == np.int8 and copy.values.shape == (3000, 32)
    approx = copy.project(rows[:5]) @ (copy.values.astype(np.float32) * copy.scales[:, None]).T
    np.testing.assert_allclose(approx, rows[:5] @ rows.T, atol=0.03)
    n = len(calls)
    again = first_stage.load_or_build(tmp_path, "visual", len(rows), 256, read)
    assert len(calls) == n  # read from disk, not rebuilt
    np.testing.assert_array_equal(again.values, copy.values)
    np.testing.assert_array_equal(again.basis, copy.basis)
    # a build killed before its values were renamed into place is not taken for a copy
    (tmp_path / "first.visual.3000.values.npy").rename(tmp_path / "first.visual.3000.values.tmp.npy")
    first_stage.load_or_build(tmp_path, "visual", len(rows), 256, read)
    assert len(calls) > n


@pytest.mark.parametrize("text_model", TEXT_MODELS)
def test_projected_first_stage_keeps_the_exact_top10_on_real_sentences(shared_data, text_model):
    """Real rows of each text model (TVR descriptions, 10 per video) and real queries (ActivityNet
    Captions): the shortlist of the projected int8 first stage holds the exact scan's top 10 videos."""
    from ivcr_engine.models import TextEncoder, prepare_models

    prepare_models()
    enc = TextEncoder(text_model)
    lines = (shared_data / "annotations" / "tvr" / "tvr_val_release.jsonl").read_text().splitlines()
    rows = enc.encode([json.loads(l)["desc"] for l in lines[:4000]], "passage")
    anet = json.loads((shared_data / "annotations" / "activitynet_captions" / "val.json").read_text())
    queries = enc.encode([v["sentences"][0] for v in list(anet.values())[:100]], "query")
    offsets = np.arange(0, len(rows) + 1, 10)
    basis = first_stage.principal_basis(rows, first_stage.ENERGY["text"], centred=True)
    assert basis is not None and basis.shape[1] <= 128
    first = Corpus({"t": quantize_int8(rows @ basis)}, offsets)
    exact = Corpus({"t": rows.astype(np.float16)}, offsets)
    # a quarter of the engine's shortlist of 400 for 10 candidates
    shortlist = first.topk_videos({"t": queries @ basis}, 100).ids
    truth = exact.topk_videos({"t": queries}, 10).ids
    recall = np.mean([len(set(t) & set(s)) / 10 for t, s in zip(truth, shortlist)])
    assert recall >= 0.99, recall
