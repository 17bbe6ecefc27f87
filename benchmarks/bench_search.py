"""Fused top-k against FAISS IndexFlatIP and NumPy on a 1M x 384 corpus (100k videos x 10 clips).

Run: make bench, or .venv/bin/python -m pytest benchmarks/bench_search.py --benchmark-enable -s
Every figure in a table comes from this one run, so ratios compare like with like.
"""
from __future__ import annotations

import concurrent.futures as cf
import time

import numpy as np
import pytest

import ivcr_engine
from conftest import best_seconds
from ivcr_engine.corpus import Corpus, quantize_int4, quantize_int8

N_VIDEOS, CLIPS, DIM, K = 100_000, 10, 384, 10
N = N_VIDEOS * CLIPS
BATCHES = (1, 32, 256)
THREADS = ivcr_engine.num_threads()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((N, DIM), dtype=np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    Q = rng.standard_normal((max(BATCHES), DIM), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    offsets = np.arange(0, N + 1, CLIPS, dtype=np.int64)
    E16, E8 = E.astype(np.float16), quantize_int8(E)
    return {"E": E, "Q": Q, "offsets": offsets,
            "fp32": Corpus(E, offsets), "fp16": Corpus(E16, offsets), "int8": Corpus({"v": E8}, offsets),
            # int8 scan for 4k candidates, re-ranked with the fp16 vectors of those candidates only
            "int8+refine": Corpus({"v": E8}, offsets, refine={"v": E16})}


@pytest.fixture(scope="module")
def faiss_index(data):
    faiss = pytest.importorskip("faiss")
    faiss.omp_set_num_threads(THREADS)
    index = faiss.IndexFlatIP(DIM)
    index.add(data["E"])
    return index


def copy_bandwidth_gbs(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """memcpy rate with THREADS threads: bytes copied per second (each byte is read once and
    written once, so STREAM's "Copy" figure, which counts both, is twice this)."""
    import time

    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(len(src)), THREADS)
    bounds = [(p[0], p[-1] + 1) for p in parts]
    best = float("inf")
    with cf.ThreadPoolExecutor(THREADS) as ex:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(ex.map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds))
            best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e9


@pytest.fixture(scope="module")
def copy_gbs(record):
    gbs = copy_bandwidth_gbs()
    record.note("search clips", f"memcpy rate ({THREADS} threads, 1 GiB): {gbs:.1f} GB/s copied "
                f"({2 * gbs:.1f} GB/s read+written, STREAM's convention)")
    return gbs


def numpy_topk_clips(E, Q, k):
    s = Q @ E.T
    part = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def numpy_topk_videos(E, Q, offsets, k):
    s = Q @ E.T
    v = np.maximum.reduceat(s, offsets[:-1], axis=1)
    part = np.argpartition(-v, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(v, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def _rounds(B):
    return 3 if B >= 256 else 5


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("impl", ["faiss fp32", "numpy fp32", "ivcr fp32", "ivcr fp16", "ivcr int8",
                                  "ivcr int8+refine"])
def test_clips(benchmark, record, data, faiss_index, copy_gbs, impl, B):
    Q = data["Q"][:B]
    if impl == "faiss fp32":
        fn = lambda: faiss_index.search(Q, K)
    elif impl == "numpy fp32":
        fn = lambda: numpy_topk_clips(data["E"], Q, K)
    else:
        corpus = data[impl.split()[1]]
        fn = lambda: corpus.topk_clips(Q, K)
    benchmark.group = f"clips B={B}"
    benchmark.pedantic(fn, rounds=_rounds(B), warmup_rounds=1)
    sec = best_seconds(benchmark)
    row = f"B={B}"
    record.put("search clips", row, f"{impl} q/s", B / sec)
    bytes_per_row = {"fp32": 4, "fp16": 2}.get(impl.split()[1], 1) * DIM + (4 if "int8" in impl else 0)
    if impl.startswith("ivcr"):
        gbs = N * bytes_per_row / sec / 1e9
        record.put("search clips", row, f"{impl} GB/s", gbs)
        if B == 1 and impl == "ivcr fp32":
            record.put("search clips", row, "ivcr fp32 % of copy bw", 100 * gbs / copy_gbs)
    _store_ratio(record, "search clips", row, impl, sec)


_SECONDS: dict = {}


def _store_ratio(record, table, row, impl, sec):
    _SECONDS[(table, row, impl)] = sec
    base = _SECONDS.get((table, row, "faiss fp32"))
    if base is None:
        return
    for name in [n for (t, r, n) in _SECONDS if t == table and r == row and n.startswith("ivcr")]:
        record.put(table, row, f"{name} / faiss", base / _SECONDS[(table, row, name)])


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("impl", ["numpy fp32", "ivcr fp32", "ivcr int8", "ivcr int8+refine"])
def test_videos(benchmark, record, data, impl, B):
    Q = data["Q"][:B]
    if impl == "numpy fp32":
        fn = lambda: numpy_topk_videos(data["E"], Q, data["offsets"], K)
    else:
        corpus = data[impl.split()[1]]
        fn = lambda: corpus.topk_videos(Q, K, agg="max")
    benchmark.group = f"videos B={B}"
    benchmark.pedantic(fn, rounds=_rounds(B), warmup_rounds=1)
    sec = best_seconds(benchmark)
    row = f"B={B}"
    record.put("search videos (max over 10 clips)", row, f"{impl} q/s", B / sec)
    _SECONDS[("videos", row, impl)] = sec
    base = _SECONDS.get(("videos", row, "numpy fp32"))
    if base and impl.startswith("ivcr"):
        record.put("search videos (max over 10 clips)", row, f"{impl} / numpy", base / sec)


# The first stage of a large index (index/first_stage.py): one query against a compact copy,
# the best 400 videos kept. Formats and widths of the folded text copies the recall check keeps
# on the benchmark corpora (int8 128 dims before int4; int4 160 under MiniLM, 256 under E5).
FIRST_STAGE = [("int8", 128), ("int4", 128), ("int4", 160), ("int8", 256), ("int4", 256)]
FIRST_TABLE = "first-stage scan (1M rows, 100k videos, B=1, best 400 videos)"


@pytest.fixture(scope="module")
def first_stage_copies():
    rng = np.random.default_rng(1)
    offsets = np.arange(0, N + 1, CLIPS, dtype=np.int64)
    out = {}
    for dim in sorted({d for _, d in FIRST_STAGE}):
        x = rng.standard_normal((N, dim), dtype=np.float32)
        out[("int8", dim)] = Corpus({"v": quantize_int8(x)}, offsets)
        out[("int4", dim)] = Corpus({"v": quantize_int4(x)}, offsets)
    return out


@pytest.mark.parametrize("fmt,dim", FIRST_STAGE, ids=[f"{f}-{d}" for f, d in FIRST_STAGE])
def test_first_stage_formats(benchmark, record, first_stage_copies, copy_gbs, fmt, dim):
    corpus = first_stage_copies[(fmt, dim)]
    q = np.random.default_rng(2).standard_normal((1, dim), dtype=np.float32)
    benchmark.group = "first stage"
    benchmark.pedantic(lambda: corpus.topk_videos(q, 400), rounds=20, warmup_rounds=2)
    sec = best_seconds(benchmark)
    row_bytes = (dim if fmt == "int8" else dim // 2) + 4
    name = f"{fmt} x {dim}"
    record.put(FIRST_TABLE, name, "ms", sec * 1000)
    record.put(FIRST_TABLE, name, "MB read", N * row_bytes / 1e6)
    record.put(FIRST_TABLE, name, "GB/s", N * row_bytes / sec / 1e9)
    record.put(FIRST_TABLE, name, "% of memcpy rate", 100 * N * row_bytes / sec / 1e9 / copy_gbs)
    _SECONDS[("first", fmt, dim)] = sec
    base = _SECONDS.get(("first", "int8", 128))
    if base:
        record.put(FIRST_TABLE, name, "speed-up over int8 x 128", base / sec)


def test_int8_recall(record, data):
    Q = data["Q"][:256]
    exact = data["fp32"].topk_clips(Q, K).ids
    for fmt in ("fp16", "int8", "int8+refine"):
        approx = data[fmt].topk_clips(Q, K).ids
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(exact, approx)])
        record.put("search clips", "recall@10 vs fp32 (256 queries)", f"ivcr {fmt} q/s", recall)
        assert recall >= 0.95, fmt


def test_results_agree_with_faiss(data, faiss_index):
    Q = data["Q"][:32]
    _, fi = faiss_index.search(Q, K)
    ours = data["fp32"].topk_clips(Q, K).ids
    agree = np.mean([len(set(a) & set(b)) / K for a, b in zip(fi, ours)])
    assert agree >= 0.999


INT4_TABLE = "int4 first-stage scan by kernel family (1M rows x 256 dims, 100k videos, best 400 videos)"


@pytest.mark.parametrize("B", [1, 32])
def test_int4_kernel_families(record, first_stage_copies, B):
    """The whitened text copy's scan (int4 x 256, E5's width) with each kernel family this CPU
    runs, same copy, same queries, same run, families taking turns round by round: AVX2's
    vpmaddubsw into int16 partial sums against AVX-512's vpdpbusd into int32 (128 dims a step).
    The scalar table only at B=1 (at B=32 it takes seconds a batch)."""
    from ivcr_engine import _core

    corpus = first_stage_copies[("int4", 256)]
    q = np.random.default_rng(3).standard_normal((B, 256), dtype=np.float32)
    families = [(0, "scalar"), (1, "avx2"), (2, "avx512")][0 if B == 1 else 1:]
    times: dict[str, list[float]] = {}
    try:
        for _ in range(15 if B == 1 else 5):
            for level, name in families:
                _core.set_simd_level(level)
                if _core.simd_level() != name:
                    continue
                corpus.topk_videos(q, 400)  # untimed: the copy's pages and this family's code warm
                t0 = time.perf_counter()
                corpus.topk_videos(q, 400)
                times.setdefault(name, []).append(time.perf_counter() - t0)
    finally:
        _core.set_simd_level(-1)
    row = f"B={B}"
    for name, t in times.items():
        ms = float(np.median(t)) * 1000
        record.put(INT4_TABLE, row, f"{name} p50 ms", ms)
        if "avx2" in times and name != "avx2":
            record.put(INT4_TABLE, row, f"{name} speed-up over avx2", float(np.median(times["avx2"])) * 1000 / ms)
    record.note(INT4_TABLE, "p50 of 15 rounds (B=1) or 5 (B=32), the engine's thread count; a family runs only where "
                            "the CPU has it (IVCR_SIMD caps it too)")


def on_huge_pages(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in anonymous memory advised onto 2 MB pages before it is written."""
    import ctypes
    import mmap

    huge = 2 << 20
    buf = mmap.mmap(-1, a.nbytes + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    skip = (-start) % huge
    ctypes.CDLL(None).madvise(ctypes.c_void_p(start + skip), ctypes.c_size_t(a.nbytes // huge * huge),
                              mmap.MADV_HUGEPAGE)
    out = np.frombuffer(buf, a.dtype, count=a.size, offset=skip).reshape(a.shape)
    out[...] = a
    return out


BLOCKS_TABLE = "int4 rows in blocks of 16 against row-major (1M rows x 256 dims, 100k videos, best 400 videos)"


@pytest.mark.parametrize("B", [1, 32])
def test_int4_blocks(record, first_stage_copies, copy_gbs, B):
    """The layout the engine scans a resident int4 copy in (search/cpu/int4_blocks.h) against the
    row-major one, same rows, same queries, same run, the two taking turns round by round, with
    each kernel family this CPU runs: one 64-byte load holds a word of 16 rows and one vector
    lane accumulates each row, where the row-major kernel walks 8 rows at once and reduces each
    row's lanes. Both give the same scores to the bit (tests/search/test_topk.py)."""
    from ivcr_engine import _core

    rng = np.random.default_rng(4)
    packed, scales = quantize_int4(rng.standard_normal((N, 256), dtype=np.float32))
    packed = on_huge_pages(packed)  # as the blocks are (the binding's copy), and the engine's resident copy
    offsets = np.arange(0, N + 1, CLIPS, dtype=np.int64)
    layouts = {"rows": _core.SearchCorpus([(packed, scales)], offsets),
               "blocks": _core.SearchCorpus([(packed, scales)], offsets, int4_blocks=True)}
    q = rng.standard_normal((B, 256), dtype=np.float32)
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(15 if B == 1 else 5):
            for level, family in [(1, "avx2"), (2, "avx512"), (3, "amx")]:  # (a family the CPU lacks: skipped)
                _core.set_simd_level(level)
                if _core.simd_level() != family:
                    continue
                for name in (("rows", "blocks") if r % 2 == 0 else ("blocks", "rows")):
                    layouts[name].topk_videos([q], [1.0], 400)  # untimed: pages and code warm
                    t0 = time.perf_counter()
                    layouts[name].topk_videos([q], [1.0], 400)
                    times.setdefault((family, name), []).append(time.perf_counter() - t0)
    finally:
        _core.set_simd_level(-1)
    for (family, name), t in times.items():
        ms = float(np.median(t)) * 1000
        row = f"B={B}, {family}, {name}"
        record.put(BLOCKS_TABLE, row, "p50 ms", ms)
        record.put(BLOCKS_TABLE, row, "GB/s", N * (128 + 4) / (ms / 1000) / 1e9)
        record.put(BLOCKS_TABLE, row, "% of memcpy rate", 100 * N * (128 + 4) / (ms / 1000) / 1e9 / copy_gbs)
        if name == "blocks":
            record.put(BLOCKS_TABLE, row, "speed-up over rows", float(np.median(times[(family, "rows")])) * 1000 / ms)
    record.note(BLOCKS_TABLE, "p50 of 15 rounds (B=1) or 5 (B=32), the engine's thread count; both layouts on "
                              "2 MB pages where the kernel gives them, as the engine's resident copies are")
