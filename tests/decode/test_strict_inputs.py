"""Decode requests: integers must be integers, and a request whose output would exceed the memory
budget is refused up front with the estimate in the message (never a bare MemoryError)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ivcr_engine
from ivcr_engine import decode


@pytest.fixture
def video(generated):
    return generated["h264_gop12.mp4"]


@pytest.fixture
def budget():
    yield ivcr_engine.set_memory_budget
    ivcr_engine.set_memory_budget(None)


def test_fractional_counts_and_sizes_are_type_errors(video):
    with pytest.raises(TypeError, match="num_frames must be an integer"):
        decode.decode_frames(video, decode.Uniform(4.7))
    with pytest.raises(TypeError, match="size must be an integer"):
        decode.decode_frames(video, decode.Uniform(2), size=(224.5, 224))
    with pytest.raises(TypeError, match="size must be"):
        decode.decode_frames(video, decode.Uniform(2), size="224")
    with pytest.raises(TypeError, match="threads must be an integer"):
        decode.decode_frames(video, decode.Uniform(2), threads=1.5)
    with pytest.raises(ValueError, match="num_frames must be in"):
        decode.decode_frames(video, decode.Uniform(2**40))


def test_a_request_over_the_memory_budget_is_refused_with_its_estimate(video, budget):
    with pytest.raises(ValueError, match=r"would need about 52\.4 TiB, over the memory budget"):
        decode.decode_frames(video, decode.Uniform(10**9))  # 160x120 RGB: 57.6 kB per frame, 52.4 TiB in all
    budget(1 << 20)
    with pytest.raises(ValueError, match=r"about 4\.6 MiB, over the memory budget of 1\.0 MiB"):
        decode.decode_frames(video, decode.Uniform(32), size=(224, 224))
    with pytest.raises(ValueError, match="a batch of 2 video"):
        decode.decode_batch([video, video], decode.Uniform(16), size=(224, 224))
    with pytest.raises(ValueError, match="over the memory budget"):
        decode.decode_frames(video, decode.Fps(25.0))  # 76 native frames of 160x120 = 4.4 MiB
    with pytest.raises(ValueError, match="one chunk"):
        next(decode.iter_frames(video, decode.AllFrames(), size=(224, 224), chunk_size=64))
    assert decode.decode_frames(video, decode.Uniform(4), size=(224, 224)).frames.shape == (4, 224, 224, 3)
    budget(None)
    assert decode.decode_frames(video, decode.Uniform(32), size=(224, 224)).frames.shape[0] == 32


def test_the_budget_comes_from_the_environment(video):
    code = ("import ivcr_engine, sys\nfrom ivcr_engine import decode\n"
            f"try:\n decode.decode_frames({str(video)!r}, decode.Uniform(64), size=(224, 224))\n"
            "except ValueError as e:\n print(e); sys.exit(0)\nsys.exit(1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "IVCR_MEMORY_BUDGET": "2M"})
    assert out.returncode == 0 and "over the memory budget of 2.0 MiB" in out.stdout, out.stdout + out.stderr


def test_a_native_allocation_failure_is_a_clear_memory_error():
    """Under an address-space limit, a huge native allocation (16 GiB of sample times) fails with
    the core's own message, not a bare std::bad_alloc."""
    code = ("import resource\nfrom ivcr_engine import decode\n"
            "vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))\n"
            "try:\n decode.sample_times(decode.Uniform(2**31 - 1), 0.0, 10.0)\n"
            "except MemoryError as e:\n print('MemoryError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MemoryError: the native core could not allocate" in out.stdout, out.stdout + out.stderr
