"""A first stage opened as ``ivcr serve`` opens it (prefault: the copies a query scans whole moved
into resident memory, an int4 one in blocks of 16 rows, search/cpu/int4_blocks.h; the folded rows
resident too) ranks as the mapped files do, with every kernel family this CPU runs: with
shortlists as short as k, where the first stage's scores alone decide which videos are found,
the same videos with the same scores."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ivcr_engine.index import Index

from ..conftest import SIMD_NAMES, available_simd_levels
from .test_folded_rows import WEIGHTS, add, queries, staged, text_rows  # noqa: F401 (staged: a fixture)

# One process per kernel family (libivcr reads IVCR_SIMD once): the staged ranking of the rows on
# stdin, shortlists of k = 10 videos, on a mapped handle and on a prefaulted one.
RANK = """
import json, sys
import numpy as np
from ivcr_engine.native import NativeIndex
q = {c: np.asarray(v, np.float32) for c, v in json.loads(sys.stdin.read()).items()}
out = {}
for prefault in (False, True):
    with NativeIndex(sys.argv[1], prefault=prefault) as nat:
        paths = []
        ids, scores = nat.rank_vectors(q, 10, weights=json.loads(sys.argv[2]), stage=(1, 10, 8000, 0.95, 8),
                                       paths=paths)
        out["prefault" if prefault else "mapped"] = [ids.tolist(), scores.tolist(), paths]
print(json.dumps(out))
"""


@pytest.mark.parametrize("kernel", [SIMD_NAMES[level] for level in available_simd_levels()])
def test_a_resident_first_stage_ranks_as_the_mapped_one(tmp_path, staged, kernel):
    root = tmp_path / "idx"
    rng = np.random.default_rng(31)
    add(root, text_rows(rng, 203), 0, 203, create=True)  # 1,624 rows: the last block of 16 half full
    q = queries(rng, 6)
    index = Index(root, text_encoder=object())
    index.rank_videos(q, 10, WEIGHTS)  # writes the int4 text copy and the folded rows
    index.close()
    got = subprocess.run([sys.executable, "-c", RANK, str(root), json.dumps(WEIGHTS)],
                         input=json.dumps({c: v.tolist() for c, v in q.items()}), env=dict(os.environ, IVCR_SIMD=kernel),
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout)
    assert out["mapped"][2] == out["prefault"][2] == ["copies"] * 6
    assert out["prefault"][0] == out["mapped"][0]
    assert out["prefault"][1] == out["mapped"][1]
