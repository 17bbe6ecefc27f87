"""The engine against the golden answers the Python path recorded (golden_material.py, issue 24):
hits with their scores to 1e-5, moments, evidence lines, concepts and line matches, on the shared
videos' index and on the benchmark's corpus at a test's scale, for the same query rows. The
engine answers once per kernel family this CPU runs (``IVCR_SIMD``, a process each, as libivcr
reads it once); the kept Python path must still give the same answers too."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ivcr_engine.index import Index

from ..conftest import SIMD_NAMES, available_simd_levels
from .golden_material import (
    GOLDEN, SCORE_TOL, SYNTHETIC_TWO_STAGE, build_index, build_synthetic, resolved, shared_answers, synthetic_answers,
)
from .reference_search import Reference

REPO = GOLDEN.parents[2]
KERNELS = [SIMD_NAMES[level] for level in available_simd_levels()]
SCORE_KEYS = {"score"}  # the 1e-5; moment edges, moment scores and line matches: 1e-4


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    from ivcr_engine.models import prepare_models

    prepare_models()  # the text model's card (its chance similarity scales line matches)
    tmp = tmp_path_factory.mktemp("golden")
    return {"shared": build_index(GOLDEN / "shared_index", tmp / "shared"), "synthetic": build_synthetic(tmp / "synthetic")}


def golden(kind: str) -> dict:
    return json.loads((GOLDEN / f"{kind}.json").read_text())


def same(want, got, where: str = "") -> None:
    """``got`` equals ``want``: the same structure, strings and refs; numbers within tolerance;
    rankings ([[ref, score], ...]) the same except for refs swapped inside a tie (scores within
    SCORE_TOL of each other), whose order float summation may decide either way."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            tol = SCORE_TOL if k in SCORE_KEYS else 1e-4
            if isinstance(want[k], float):
                assert isinstance(got[k], (int, float)) and abs(got[k] - want[k]) <= tol, f"{where}.{k}: {got[k]} != {want[k]}"
            else:
                same(want[k], got[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {len(got)} items, want {len(want)}"
        if want and all(_ranked(x) for x in want) and all(_ranked(x) for x in got):
            return same_ranking(want, got, where)
        for i, (w, g) in enumerate(zip(want, got)):
            same(w, g, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got is not None and abs(got - want) <= 1e-4, f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _ranked(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and isinstance(x[0], int) and isinstance(x[1], float)


def same_ranking(want: list, got: list, where: str) -> None:
    for i, ((wr, ws), (gr, gs)) in enumerate(zip(want, got)):
        assert abs(gs - ws) <= SCORE_TOL, f"{where}[{i}]: score {gs} != {ws}"
        if gr != wr:
            tied = {r for r, s in want if abs(s - ws) <= SCORE_TOL}
            assert gr in tied, f"{where}[{i}]: video {gr} where the Python path ranked {wr} ({ws})"


def engine_answers(kind: str, root, kernel: str, prefault: bool = False) -> dict:
    env = dict(os.environ, IVCR_SIMD=kernel)
    got = subprocess.run([sys.executable, "-m", "tests.engine.golden_material", "answer", kind, str(root)]
                         + ["prefault"] * prefault, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    return json.loads(got.stdout)


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_engine_gives_the_golden_answers_on_the_shared_videos(material, kernel):
    want = golden("shared")
    got = engine_answers("shared", material["shared"], kernel)
    same(resolved(want), resolved(got | {"texts": want["texts"]}))
    # what the material exercises: line matches from the lexical channel and the line vectors,
    # moments cut inside videos, and every video ranked
    assert any(h["lines"] for q in want["search"] for h in q)
    assert any(x is not None and x > 0 for q in want["search"] for h in q for x in h["line_match"])
    assert len(want["rank"][0]) == 8 and [h["ref"] for h in want["allow_deny"][1]] != [h["ref"] for h in want["allow_deny"][0]]


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_engine_gives_the_golden_answers_through_its_first_stage(material, kernel):
    """The staged ranking (a first stage over the compact copies, then the exact re-rank) gives
    the exact answers the Python path recorded."""
    want = golden("synthetic")
    got = engine_answers("synthetic", material["synthetic"], kernel)
    paths = got.pop("paths")
    got.pop("narrow")
    assert paths and "exact" not in paths, f"the synthetic index should rank in two stages, took {paths}"
    same(resolved(want), resolved(got))


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_resident_first_stage_gives_the_golden_answers(material, kernel):
    """Opened as ``ivcr serve`` opens it (prefault), the engine ranks on the copies it moved into
    resident memory (here int8 ones; the int4 blocks in test_resident_stage.py): the same answers
    through the same paths, and with shortlists as short as k, where the first stage's scores
    decide which videos are found, the same videos."""
    want = golden("synthetic")
    mapped = engine_answers("synthetic", material["synthetic"], kernel)
    got = engine_answers("synthetic", material["synthetic"], kernel, prefault=True)
    assert got.pop("paths") == mapped.pop("paths") == ["copies"]
    assert got.pop("narrow") == mapped.pop("narrow")
    same(resolved(want), resolved(got))
    assert got == mapped


def test_the_python_path_still_gives_its_golden_answers(material, monkeypatch):
    """The reference the other engine tests hold it to has not drifted from what was recorded."""
    rows = dict(np.load(GOLDEN / "shared_queries.npz"))
    like = rows.pop("like")
    want = golden("shared")
    index = Index(material["shared"])
    try:
        same(resolved(want), resolved(shared_answers(Reference(index), want["texts"], rows, like) | {"texts": want["texts"]}))
    finally:
        index.close()
    from ivcr_engine.index import ranking as first_stages

    monkeypatch.setattr(first_stages, "TWO_STAGE_MIN_ROWS", SYNTHETIC_TWO_STAGE)
    index = Index(material["synthetic"])
    try:
        same(resolved(golden("synthetic")), resolved(synthetic_answers(Reference(index), dict(np.load(GOLDEN / "synthetic_queries.npz")))))
    finally:
        index.close()
