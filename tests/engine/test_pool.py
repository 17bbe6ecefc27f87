"""The engine's thread pool, which the scans and the native text encoder share, under
ThreadSanitizer: regions from two threads at once and resizes between them
(tests/engine/pool_stress.cpp, compiled here with csrc/common/thread_pool.cpp)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_pool_runs_each_task_once_under_thread_sanitizer(tmp_path):
    cxx = shutil.which("g++") or pytest.fail("no C++ compiler")
    exe = tmp_path / "pool_stress"
    subprocess.run([cxx, "-O1", "-g", "-fsanitize=thread", "-std=c++17", f"-I{REPO / 'csrc'}",
                    REPO / "tests/engine/pool_stress.cpp", REPO / "csrc/common/thread_pool.cpp", "-lpthread", "-o",
                    exe], check=True)
    got = subprocess.run([exe], capture_output=True, text=True, timeout=300,
                         env={"TSAN_OPTIONS": "halt_on_error=1", "PATH": "/usr/bin:/bin"})
    assert "ThreadSanitizer" not in got.stderr, got.stderr[-4000:]
    assert got.returncode == 0 and got.stdout.strip() == "bad 0", got.stdout + got.stderr[-2000:]
