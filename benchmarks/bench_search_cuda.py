"""The CUDA search path (1M x 384, k = 10) against torch (matmul + topk on the GPU) and faiss-gpu
when present, with the corpus read rate next to the device's memcpy rate. Skipped without a CUDA
device; this file has not yet been run on a GPU by the project (see docs/BENCHMARKS.md)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import best_seconds
from ivcr_engine import _core
from ivcr_engine.corpus import Corpus, cuda_available

pytestmark = pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
N, DIM, K = 1_000_000, 384, 10
TABLE = "CUDA search clips (1M x 384, k=10)"
_SEC = {}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((N, DIM), dtype=np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    Q = rng.standard_normal((256, DIM), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return {"E": E, "Q": Q, "fp32": Corpus(E, device="cuda"), "fp16": Corpus(E.astype(np.float16), device="cuda")}


@pytest.fixture(scope="module")
def memcpy_gbs(record):
    gbs = _core.cuda_memcpy_bandwidth(1 << 30, 5)
    record.note(TABLE, f"device memcpy rate: {gbs:.0f} GB/s copied")
    return gbs


@pytest.mark.parametrize("B", [1, 32, 256])
@pytest.mark.parametrize("impl", ["torch fp32", "faiss-gpu fp32", "ivcr fp32", "ivcr fp16"])
def test_cuda_clips(benchmark, record, data, memcpy_gbs, impl, B):
    Q = data["Q"][:B]
    if impl == "torch fp32":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("torch has no CUDA here")
        Et, Qt = torch.from_numpy(data["E"]).cuda(), torch.from_numpy(Q).cuda()

        def fn():
            s, i = torch.topk(Qt @ Et.T, K, dim=1)
            return s.cpu(), i.cpu()
    elif impl == "faiss-gpu fp32":
        faiss = pytest.importorskip("faiss")
        if not hasattr(faiss, "StandardGpuResources"):
            pytest.skip("faiss without GPU support")
        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(res, DIM)
        index.add(data["E"])
        fn = lambda: index.search(Q, K)
    else:
        corpus = data[impl.split()[1]]
        fn = lambda: corpus.topk_clips(Q, K)
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    sec = best_seconds(benchmark)
    row = f"B={B}"
    record.put(TABLE, row, f"{impl} q/s", B / sec)
    _SEC[(row, impl)] = sec
    if impl.startswith("ivcr"):
        gbs = N * DIM * (4 if "fp32" in impl else 2) / sec / 1e9
        record.put(TABLE, row, f"{impl} GB/s", gbs)
        record.put(TABLE, row, f"{impl} % of memcpy", 100 * gbs / memcpy_gbs)
        if (row, "torch fp32") in _SEC:
            record.put(TABLE, row, f"{impl} / torch", _SEC[(row, "torch fp32")] / sec)
