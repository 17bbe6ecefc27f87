"""Decode benchmarks: ivcr_engine.decode against PyAV, decord, torchcodec (CPU) and the ffmpeg CLI,
all with the same thread budget, in one run.

Workloads (issue 4):
  A  32 uniformly sampled frames at 224x224 RGB from each shared video plus a generated 5-minute
     1080p h264 video with GOP 250
  B  1 fps frames at 224x224 from the same videos
  C  full decode of the 1080p video (ours: every frame resized to 224x224 and streamed;
     ffmpeg: `ffmpeg -threads N -i FILE -f null -`, decode only, the physical limit)

Run: make bench, or
  .venv/bin/python -m pytest benchmarks/bench_decode.py --benchmark-enable --benchmark-only -s
IVCR_BENCH_THREADS sets the thread budget (default: all cores). The 1080p file is generated
once into .cache/bench/ (a few minutes).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine import decode

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / ".cache" / "bench"
LONG_NAME = "h264_1080p_5min_gop250.mp4"
THREADS = int(os.environ.get("IVCR_BENCH_THREADS", os.cpu_count() or 1))
SIZE = (224, 224)
SAMPLERS = {"A": decode.Uniform(32), "B": decode.Fps(1.0)}
RESULTS: dict = {}


def _generate_long(path: Path) -> None:
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1920x1080:rate=25:duration=300", "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "23", "-g", "250", str(tmp)], check=True)
    tmp.rename(path)


@pytest.fixture(scope="session")
def long_video() -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed to generate the 1080p video")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / LONG_NAME
    if not path.exists():
        _generate_long(path)
    return path


@pytest.fixture(scope="session")
def videos(long_video) -> list:
    shared = REPO.parent / "shared" / "data" / "videos"
    if not shared.is_dir():
        pytest.skip("shared videos not found")
    return sorted(shared.glob("*")) + [long_video]


@pytest.fixture(scope="session")
def plans(videos) -> dict:
    """Per workload and video: the stream decoded and the sorted target times (same for all)."""
    out = {}
    for w, sampler in SAMPLERS.items():
        out[w] = []
        for p in videos:
            info = decode.probe(p)
            times = np.sort(decode.sample_times(sampler, info.start_time, info.duration))
            out[w].append((p, info.video_stream, info.start_time, info.start_time + info.duration, times))
    return out


# ---------------------------------------------------------------------------- implementations


def run_ours(plan, sampler):
    results = decode.decode_batch([p for p, *_ in plan], sampler, size=SIZE, threads=THREADS)
    bad = [r.error for r in results if not r.ok]
    assert not bad, bad
    return sum(len(r.frames) for r in results)


def run_pyav(plan, sampler):
    import av

    n = 0
    for path, stream_index, start, end, times in plan:
        with av.open(str(path)) as c:
            st = c.streams[stream_index]
            st.thread_type = "AUTO"
            st.codec_context.thread_count = THREADS
            frames = iter(())
            prev = pending = None
            out = []
            for t in times:
                # A competent PyAV loop: seek only for jumps over 2 s, else decode forward.
                if prev is None or t - prev.time > 2.0:
                    c.seek(int(t / st.time_base), stream=st, backward=True)
                    frames = c.decode(st)
                    prev = pending = None
                while True:
                    f = pending if pending is not None else next(frames, None)
                    pending = None
                    if f is None:
                        break
                    if prev is not None and f.time > t:
                        pending = f
                        break
                    prev = f
                    if f.time > t:
                        break
                out.append(prev.reformat(width=SIZE[1], height=SIZE[0], format="rgb24",
                                         interpolation="BILINEAR").to_ndarray())
            n += len(out)
    return n


def run_decord(plan, sampler):
    import decord

    n = 0
    for path, stream_index, start, end, times in plan:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=SIZE[1], height=SIZE[0], num_threads=THREADS)
        starts = vr.get_frame_timestamp(range(len(vr)))[:, 0]
        idx = np.clip(np.searchsorted(starts, times + 1e-9, side="right") - 1, 0, len(vr) - 1)
        batch = vr.get_batch(list(idx)).asnumpy()
        n += len(batch)
    return n


def run_torchcodec(plan, sampler):
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    n = 0
    for path, stream_index, start, end, times in plan:
        dec = VideoDecoder(str(path), stream_index=stream_index, num_ffmpeg_threads=THREADS,
                           seek_mode="exact", dimension_order="NHWC", transforms=[Resize(SIZE)])
        md = dec.metadata
        lo = md.begin_stream_seconds if md.begin_stream_seconds is not None else start
        hi = md.end_stream_seconds if md.end_stream_seconds is not None else end
        ts = np.clip(times, lo, np.nextafter(hi, lo))
        batch = dec.get_frames_played_at(seconds=ts.tolist()).data.numpy()
        n += len(batch)
    return n


IMPLS = {"ivcr_engine": run_ours, "pyav": run_pyav, "decord": run_decord, "torchcodec": run_torchcodec}


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of finished children (the ffmpeg CLI)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(benchmark, fn, *args):
    """One round (these workloads take seconds) with the CPU time it used: on a shared machine
    CPU seconds are steadier than wall time, so both are reported."""
    before = _cpu_seconds()
    frames = benchmark.pedantic(fn, args=args, rounds=1, iterations=1, warmup_rounds=0)
    return frames, _cpu_seconds() - before


def _record(workload, impl, benchmark, frames, cpu):
    RESULTS.setdefault(workload, {})[impl] = {"seconds": benchmark.stats.stats.median, "cpu_seconds": cpu,
                                              "frames": frames}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("workload", ["A", "B"])
def test_sampled(benchmark, plans, workload, impl):
    pytest.importorskip({"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}.get(impl, "ivcr_engine"))
    fn = IMPLS[impl]
    frames, cpu = _timed(benchmark, fn, plans[workload], SAMPLERS[workload])
    _record(workload, impl, benchmark, frames, cpu)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_full_decode_ours(benchmark, long_video, interpolation):
    def run():
        n = 0
        for chunk in decode.iter_frames(long_video, decode.AllFrames(), size=SIZE, chunk_size=64, threads=THREADS,
                                        interpolation=interpolation):
            n += len(chunk.frames)
        return n

    frames, cpu = _timed(benchmark, run)
    # bilinear is the workload; nearest shows how much of the gap is the resize itself.
    _record("C", "ivcr_engine" if interpolation == "bilinear" else "ivcr_nearest", benchmark, frames, cpu)


def test_full_decode_ffmpeg(benchmark, long_video):
    def run():
        subprocess.run(["ffmpeg", "-v", "error", "-threads", str(THREADS), "-i", str(long_video), "-f", "null", "-"],
                       check=True)
        return 0

    _, cpu = _timed(benchmark, run)
    _record("C", "ffmpeg", benchmark, None, cpu)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not RESULTS:
        return
    lines = [f"\nDecode benchmark ({platform.machine()}, {os.cpu_count()} cores, thread budget {THREADS})",
             f"{'workload':<10}{'impl':<14}{'seconds':>10}{'cpu s':>9}{'frames':>8}{'ours x faster':>15}"
             f"{'(cpu)':>8}"]
    summary = {}
    for w in sorted(RESULTS):
        ours = RESULTS[w].get("ivcr_engine", {}).get("seconds")
        ours_cpu = RESULTS[w].get("ivcr_engine", {}).get("cpu_seconds")
        for impl, r in RESULTS[w].items():
            ratio = r["seconds"] / ours if ours else float("nan")
            cpu_ratio = r["cpu_seconds"] / ours_cpu if ours_cpu else float("nan")
            lines.append(f"{w:<10}{impl:<14}{r['seconds']:>10.2f}{r['cpu_seconds']:>9.2f}{str(r['frames']):>8}"
                         f"{ratio:>15.2f}{cpu_ratio:>8.2f}")
        summary[w] = {impl: r["seconds"] for impl, r in RESULTS[w].items()}
    targets = []
    a_b = [(w, summary[w]) for w in ("A", "B") if w in summary]
    for w, s in a_b:
        if "ivcr_engine" in s and "pyav" in s:
            targets.append(f"{w}: vs PyAV {s['pyav'] / s['ivcr_engine']:.2f}x (target >= 1.5)")
        others = [s[k] for k in ("decord", "torchcodec") if k in s]
        if "ivcr_engine" in s and others:
            targets.append(f"{w}: vs faster of decord/torchcodec {min(others) / s['ivcr_engine']:.2f}x (target >= 1.0)")
    if "C" in summary and {"ivcr_engine", "ffmpeg"} <= set(summary["C"]):
        targets.append(f"C: vs ffmpeg -f null {summary['C']['ffmpeg'] / summary['C']['ivcr_engine']:.2f}x "
                       "(target >= 0.8)")
    lines += targets
    print("\n".join(lines))
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "decode_results.json").write_text(json.dumps(
        {"threads": THREADS, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": RESULTS,
         "targets": targets}, indent=2))
