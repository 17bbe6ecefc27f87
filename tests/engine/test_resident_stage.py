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


# A prefaulted handle's folded rows, locked or not: (locked, unlocked) before and after a text
# ranking, and the ranking's answers, printed by a process whose RLIMIT_MEMLOCK the test sets.
LOCK = """
import json, resource, sys
import numpy as np
from ivcr_engine.native import NativeIndex
from ivcr_engine.server import memory_note
limit = int(sys.argv[3])
if limit >= 0:
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]))
q = {c: np.asarray(v, np.float32) for c, v in json.loads(sys.stdin.read()).items()}
out = {}
for prefault in (False, True):
    with NativeIndex(sys.argv[1], prefault=prefault) as nat:
        before = nat.locked_bytes()
        ids, scores = nat.rank_vectors(q, 10, weights=json.loads(sys.argv[2]), stage=(1, 10, 8000, 0.95, 8))
        out["prefault" if prefault else "mapped"] = [before, nat.locked_bytes(), ids.tolist(), scores.tolist(),
                                                     memory_note(nat)]
print(json.dumps(out))
"""


def _lock_run(root, q, limit: int, prefix=()) -> dict:
    got = subprocess.run([*prefix, sys.executable, "-c", LOCK, str(root), json.dumps(WEIGHTS), str(limit)],
                         input=json.dumps({c: v.tolist() for c, v in q.items()}), capture_output=True, text=True,
                         timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    return json.loads(got.stdout)


def test_a_prefaulted_handle_says_what_it_could_not_lock(tmp_path, staged):
    """ivcr_index_locked_bytes: a prefaulted handle locks its folded rows (values and norms) when a
    text ranking first loads them; where RLIMIT_MEMLOCK forbids it (a user namespace keeps root from
    overriding the limit), it reads them in instead, says how many bytes it could not lock, ranks
    the same, and `ivcr serve` names the limit; a mapped handle locks nothing."""
    import shutil

    root = tmp_path / "idx"
    rng = np.random.default_rng(37)
    add(root, text_rows(rng, 120), 0, 120, create=True)
    q = queries(rng, 3)
    index = Index(root, text_encoder=object())
    index.rank_videos(q, 10, WEIGHTS)  # writes the text copy and the folded rows
    index.close()
    folded = sum(p.stat().st_size for p in (root / "vectors").glob("first.text-*.folded.*.npy"))
    assert folded > 0
    free = _lock_run(root, q, -1)  # the limits this suite runs under
    assert free["mapped"][:2] == [[0, 0], [0, 0]] and free["mapped"][4] is None
    before, after, _, _, note = free["prefault"]
    assert before == [0, 0] and sum(after) == folded  # (what the limit allowed: locked, the rest not)
    assert (note is None) == (after[1] == 0)
    if os.geteuid() == 0:  # root may lock past any limit: only a user namespace takes that away
        prefix = ["unshare", "--user", "--map-root-user"]
        if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
            pytest.skip("no user namespace here (unshare missing or refused): root cannot be kept from locking")
    else:
        prefix = []
    refused = _lock_run(root, q, 0, prefix)
    assert refused["prefault"][1] == [0, folded]
    assert "could not be locked in memory (RLIMIT_MEMLOCK 0 MB)" in refused["prefault"][4]
    assert refused["prefault"][2:4] == free["prefault"][2:4] == free["mapped"][2:4]  # the same answers
