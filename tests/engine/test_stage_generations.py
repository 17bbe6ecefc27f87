"""How the engine reads a first stage's generation while the writer grows and removes them
(csrc/engine/first_stage.cpp, FirstStage::stage; index/first_stage.py, remove_superseded): the
writer removes a superseded generation's values file before its other parts, so the engine can
tell a part that was never written from one removed under it; and a projected copy that lost its
basis is refused with a clear error, never scanned with the query left unprojected."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.index import Index
from ivcr_engine.index import first_stage
from ivcr_engine.index.store import IndexDamaged
from ivcr_engine.native import NativeIndex

from .test_folded_rows import TAG, WEIGHTS, add, queries, staged, text_rows, vectors  # noqa: F401 (staged: a fixture)

CLIPS = 8


def rank(root, q, k, stage=(1, 60, 8000, 0.95, 8)):
    """The engine's staged ranking alone (no Python first: nothing builds or checks the copies)."""
    with NativeIndex(root) as nat:
        paths: list = []
        ids, scores = nat.rank_vectors(q, k, weights=WEIGHTS, stage=stage, paths=paths)
        return ids, scores, paths


def test_a_projected_copy_without_its_basis_is_refused(tmp_path, staged):
    """The text copy holds int4 projections of the 49-dim rows onto 32 dims: without its basis
    the engine cannot map a query onto them, and says so (it used to read the query's leading
    dims as if they were the copy's and rank on noise)."""
    root = tmp_path / "idx"
    rng = np.random.default_rng(11)
    add(root, text_rows(rng, 200), 0, 200, create=True)
    q = queries(rng, 4)
    index = Index(root, text_encoder=object())
    index.rank_videos(q, 10, WEIGHTS)  # writes the copies
    index.close()
    rows = 200 * CLIPS
    _, _, paths = rank(root, q, 10)
    assert paths == ["copies"] * 4
    basis = first_stage._part(vectors(root), TAG, rows, "basis")
    values = np.load(first_stage._part(vectors(root), TAG, rows, "values"), mmap_mode="r")
    assert basis.exists() and values.dtype == np.uint8 and values.shape[1] * 2 == 32
    basis.unlink()
    with pytest.raises(IndexDamaged, match=r"holds \d+ dims and no basis maps the query's 49 .* check --repair"):
        rank(root, q, 10)


def test_a_superseded_generation_loses_its_values_file_first(tmp_path, staged, monkeypatch):
    """A growth removes the previous generation of the copy and of the folded rows, each one's
    values file before any other part of it."""
    root = tmp_path / "idx"
    rng = np.random.default_rng(12)
    add(root, text_rows(rng, 150), 0, 150, create=True)
    q = queries(rng, 2)
    index = Index(root, text_encoder=object())
    index.rank_videos(q, 5, WEIGHTS)
    index.close()
    old = 150 * CLIPS
    parts = {p.name for p in vectors(root).glob(f"first.{TAG}*.{old}.*.npy")}
    assert {f"first.{TAG}.{old}.values.npy", f"first.{TAG}.{old}.basis.npy",
            f"first.{TAG}.folded.{old}.values.npy", f"first.{TAG}.folded.{old}.norms.npy"} <= parts
    removed: list[str] = []
    unlink = Path.unlink

    def recording(self, missing_ok=False):
        removed.append(self.name)
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", recording)
    add(root, text_rows(rng, 30), 150, 30)
    index = Index(root, text_encoder=object())
    index.rank_videos(q, 5, WEIGHTS)  # grows both from the last generation
    index.close()
    for stem in (f"first.{TAG}.{old}.", f"first.{TAG}.folded.{old}."):
        mine = [n for n in removed if n.startswith(stem)]
        assert mine and mine[0] == stem + "values.npy" and len(mine) == len(set(mine)), mine
        assert not list(vectors(root).glob(stem + "*"))
    ids, scores, paths = rank(root, q, 5)  # and the grown generation serves
    assert paths == ["copies"] * 2 and (ids >= 0).all()
