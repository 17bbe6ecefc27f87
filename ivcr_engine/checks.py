"""Strict argument checks shared by the Python faces, and the memory budget for requests whose
output size the caller chooses (decoding). A float where an integer is meant is a TypeError
(never truncated), an integer beyond int64 a ValueError, and a request whose output would exceed
the budget is refused before any work, with the estimate in the message."""
from __future__ import annotations

import operator
import os
import re
from typing import Iterable

import numpy as np

from .errors import InvalidArgument, WrongType

INT64_MAX = np.iinfo(np.int64).max
_budget: int | None = None


def as_int(x, name: str) -> int:
    """An integer argument (Python or NumPy integer; bool, float and str refused)."""
    if isinstance(x, (bool, np.bool_)) or isinstance(x, (float, np.floating)):
        raise WrongType(f"{name} must be an integer, got {type(x).__name__} {x!r}")
    try:
        v = operator.index(x)
    except TypeError:
        raise WrongType(f"{name} must be an integer, got {type(x).__name__}") from None
    if not -INT64_MAX - 1 <= v <= INT64_MAX:
        raise InvalidArgument(f"{name} = {v} is beyond the 64-bit integer range")
    return v


def as_int_array(x: Iterable | np.ndarray, name: str) -> np.ndarray:
    """Integers as a C-contiguous int64 array; floats (even whole ones), bools and out-of-range
    values are refused rather than converted."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        items = list(x)
        for v in items:
            if isinstance(v, (bool, np.bool_, float, np.floating)) or not hasattr(v, "__index__"):
                raise WrongType(f"{name} must be integers, got {type(v).__name__} {v!r}")
        try:
            arr = np.array([operator.index(v) for v in items], dtype=np.int64)
        except OverflowError:
            raise InvalidArgument(f"{name} holds a value beyond the 64-bit integer range") from None
    if arr.dtype.kind not in "iu":
        raise WrongType(f"{name} must be integers, got {arr.dtype} (fractional values would be truncated)")
    if arr.dtype == np.uint64 and arr.size and arr.max() > INT64_MAX:
        raise InvalidArgument(f"{name} holds a value beyond the 64-bit integer range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise InvalidArgument(f"IVCR_MEMORY_BUDGET={text!r}: expected bytes, e.g. 4G or 500M")
    return int(float(m[1]) * 1024 ** "_kmgt".index(m[2] or "_"))


def memory_budget() -> int:
    """Bytes one request's output may take: ``set_memory_budget``, else ``IVCR_MEMORY_BUDGET``
    (e.g. "4G"), else half of this machine's memory."""
    if _budget is not None:
        return _budget
    env = os.environ.get("IVCR_MEMORY_BUDGET")
    if env:
        return _parse_bytes(env)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def set_memory_budget(nbytes: int | None) -> None:
    """Set the per-request output budget in bytes (None: back to the default)."""
    global _budget
    if nbytes is not None and as_int(nbytes, "memory budget") <= 0:
        raise InvalidArgument("the memory budget must be positive")
    _budget = None if nbytes is None else int(nbytes)


def check_output_bytes(nbytes: float, what: str) -> None:
    budget = memory_budget()
    if nbytes > budget:
        raise InvalidArgument(f"{what} would need about {_human(nbytes)}, over the memory budget of {_human(budget)}; "
                         "ask for fewer or smaller outputs, or raise it (ivcr_engine.set_memory_budget or "
                         "IVCR_MEMORY_BUDGET)")


def _human(n: float) -> str:
    unit = 0
    while n >= 1024 and unit < 5:
        n, unit = n / 1024, unit + 1
    return f"{n:.1f} {('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB')[unit]}"
