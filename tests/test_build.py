"""The foundation: the extension imports, says truthfully what it was built with, and passes
numpy buffers without copying."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ivcr_engine
from ivcr_engine import _core

REPO = Path(__file__).resolve().parents[1]


def _package_build() -> Path:
    """The package's build folder (build/<wheel tag>), not the engine-only builds beside it (the
    suite's sanitizer build of libivcr, the benchmarks' host programs); skips when there is none."""
    caches = sorted(c for c in (REPO / "build").glob("*/CMakeCache.txt") if c.parent.name not in ("sanitize", "abi-bench"))
    if not caches:
        pytest.skip("no CMake build folder in this checkout (installed from a wheel?)")
    return caches[-1].parent


def _cmake_cache() -> str:
    return (_package_build() / "CMakeCache.txt").read_text()


def test_extension_imports_from_package():
    assert _core.__name__ == "ivcr_engine._core"
    assert Path(_core.__file__).suffix == ".so"


def test_build_info_keys_and_types():
    info = ivcr_engine.build_info()
    for key in ("version", "compiler", "simd_compiled", "simd_detected", "simd_active", "cuda",
                "ffmpeg_version", "num_threads"):
        assert key in info, key
    assert info["version"] == ivcr_engine.__version__
    assert isinstance(info["cuda"], bool)
    assert "scalar" in info["simd_compiled"]
    assert info["simd_active"] in info["simd_compiled"]


def test_cuda_flag_matches_the_cmake_configuration():
    cache = _cmake_cache()
    m = re.search(r"^IVCR_CUDA_BUILT:INTERNAL=(\w+)$", cache, re.M)
    assert m, "the CMake cache does not record IVCR_CUDA_BUILT"
    nvcc_used = m.group(1) == "ON"
    assert ivcr_engine.build_info()["cuda"] == nvcc_used


def test_cuda_built_when_nvcc_is_present():
    cache = _cmake_cache()
    if "IVCR_CUDA:STRING=OFF" in cache:
        pytest.skip("CUDA disabled explicitly")
    if not (shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists()):
        pytest.skip("no nvcc on this machine")
    assert ivcr_engine.build_info()["cuda"] is True


def test_simd_detection_matches_proc_cpuinfo():
    flags_line = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[-1].split())
    detected = set(ivcr_engine.build_info()["simd_detected"])
    # build_info names features as cpuid does; the kernel spells a few with an underscore.
    kernel_spelling = {"avx512vnni": "avx512_vnni"}
    for name in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vnni"):
        assert (name in detected) == (kernel_spelling.get(name, name) in flags), name


def test_files_built_for_one_cpu_family_define_no_shared_symbol():
    """A file compiled with AVX2, AVX-512 or AMX flags (its name says which) must define no weak
    symbol: an inline or template function it instantiates (a std::vector member, say) is emitted
    weak in every file that uses it, the linker keeps one copy for all callers, and if it keeps
    this file's, code that runs on any CPU calls instructions that CPU may lack."""
    if shutil.which("nm") is None:
        pytest.skip("no nm")
    objects = [o for o in (_package_build() / "CMakeFiles").rglob("*.o") if re.search(r"_(avx2|avx512|amx)\.c(pp)?\.o$", o.name)]
    assert len(objects) >= 4, objects  # the three search kernel families and the span kernel, at least
    for obj in objects:
        out = subprocess.run(["nm", "-C", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout
        shared = [line for line in out.splitlines() if line.split(" ", 2)[1:2] and line.split(" ", 2)[1] in ("W", "V", "u")]
        assert not shared, f"{obj.name} defines weak symbols: {shared}"


def test_ffmpeg_version_is_the_linked_library():
    info = ivcr_engine.build_info()
    assert re.match(r"^\d+\.\d+", info["ffmpeg_version"]) or info["ffmpeg_version"].startswith("n")
    assert info["libavcodec"].startswith("Lavc")


def test_normalize_rows_round_trips_without_copy():
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    expected = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = ivcr_engine.normalize_rows(x)
    assert out is x or np.shares_memory(out, x)
    assert out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_normalize_rows_keeps_zero_rows_and_rejects_bad_input():
    x = np.zeros((2, 3), np.float32)
    ivcr_engine.normalize_rows(x)
    assert not np.any(x)
    with pytest.raises(TypeError, match="float32"):
        ivcr_engine.normalize_rows(np.ones((2, 3), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        ivcr_engine.normalize_rows(np.ones((3, 4), np.float32)[:, ::2])
    ro = np.ones((2, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        ivcr_engine.normalize_rows(ro)


def test_thread_pool_size_is_settable():
    before = ivcr_engine.num_threads()
    try:
        ivcr_engine.set_num_threads(1)
        assert ivcr_engine.num_threads() == 1
    finally:
        ivcr_engine.set_num_threads(before)
    assert ivcr_engine.num_threads() == before


def test_cli_version_and_info():
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and ivcr_engine.__version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "info", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json

    info = json.loads(out.stdout)
    assert "CPUExecutionProvider" in info["execution_providers"]
    assert info["cuda"] == ivcr_engine.build_info()["cuda"]


def test_cli_bench_names_its_suites():
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "bench", "no_such_suite"], capture_output=True, text=True)
    assert out.returncode == 1 and "have:" in out.stderr and "search" in out.stderr
