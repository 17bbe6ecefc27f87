"""ivcr_engine: a native inference engine for Interactive Video Corpus Retrieval.

The heavy lifting lives in the C++/CUDA extension ``ivcr_engine._core``; the Python modules
beside it are thin, typed faces that shape arguments and results.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version

from . import _core
from ._core import normalize_rows, num_threads, set_num_threads
from .checks import memory_budget, set_memory_budget

try:
    __version__ = _pkg_version("ivcr_engine")
except PackageNotFoundError:  # running from a source tree that was built in place
    __version__ = _core.build_info()["version"]


def build_info() -> dict:
    """What the native core was built with and what it sees on this machine.

    Keys: version, compiler, build_type, simd_compiled, simd_detected, simd_active, num_threads,
    ffmpeg_version, libavcodec, libavformat, cuda (compiled in), cuda_device_count and, when CUDA
    is compiled, cuda_compiler_version, cuda_runtime_version, cuda_device, cuda_error.
    """
    return dict(_core.build_info())


__all__ = ["build_info", "memory_budget", "normalize_rows", "num_threads", "set_memory_budget", "set_num_threads",
           "__version__"]
