"""The rules that snap a grid span to the text lines matching a query, in the engine
(csrc/engine/moment_edges.cpp): moment_edges_test.cpp checks them on hand-made lines and scores
(who may start a match, who joins it, what stays on the grid), compiled here with and without
the sanitizers. How they serve whole moments is test_native_parity.py's and
tests/index/test_moment_precision.py's."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flags", [["-O2"], ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]],
                         ids=["plain", "sanitized"])
def test_moment_edge_rules(flags, tmp_path):
    cxx = shutil.which("c++") or pytest.fail("no C++ compiler")
    exe = tmp_path / "moment_edges_test"
    build = subprocess.run([cxx, "-std=c++17", *flags, f"-I{REPO / 'csrc'}", str(REPO / "csrc/engine/moment_edges.cpp"),
                            str(REPO / "tests/engine/moment_edges_test.cpp"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("0 failed")
