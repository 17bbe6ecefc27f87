"""The int8 query encoder stays within cosine 0.99 of the float MiniLM graph on real queries, and
indexes use it only while it matches the graph their passages were embedded with."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ivcr_engine.models import ModelCard, TextEncoder, model_dir, prepare_models
from ivcr_engine.models.registry import query_encoder_name


def annotation_queries(shared_data) -> list[str]:
    """Queries of every shared annotation set (the query encoder meets all of these styles)."""
    ann = shared_data / "annotations"
    out = [json.loads(l)["query"] for l in (ann / "qvhighlights" / "highlight_val_release.jsonl").read_text().splitlines()[:80]]
    out += [json.loads(l)["desc"] for l in (ann / "tvr" / "tvr_val_release.jsonl").read_text().splitlines()[:80]]
    out += [l.split("##", 1)[1] for l in (ann / "charades_sta" / "charades_sta_test.txt").read_text().splitlines()[:80]]
    out += [d["description"] for d in json.loads((ann / "didemo" / "val_data.json").read_text())[:80]]
    anet = json.loads((ann / "activitynet_captions" / "val.json").read_text())
    out += [v["sentences"][0].strip() for v in list(anet.values())[:80]]
    return out


@pytest.fixture(scope="module")
def encoders():
    prepare_models()
    return TextEncoder("text_minilm_l6"), TextEncoder("text_minilm_l6_int8")


def test_int8_query_encoder_matches_the_float_model(encoders, shared_data):
    float_enc, int8_enc = encoders
    queries = annotation_queries(shared_data)
    cos = (float_enc.encode(queries, "query") * int8_enc.encode(queries, "query")).sum(axis=1)
    assert len(queries) == 400
    assert cos.min() >= 0.99, (cos.min(), queries[int(cos.argmin())])


def test_indexes_pick_the_query_encoder_of_their_text_model(monkeypatch):
    prepare_models()
    assert query_encoder_name("text_minilm_l6") == "text_minilm_l6_int8"
    assert query_encoder_name("some_other_model") == "some_other_model"
    for value in ("base", "float"):
        monkeypatch.setenv("IVCR_QUERY_ENCODER", value)
        assert query_encoder_name("text_minilm_l6") == "text_minilm_l6"
        assert query_encoder_name("text_me5_small") == "text_me5_small"


def test_a_stale_query_encoder_is_not_used(tmp_path):
    """After the base graph changes (a re-export), the derived int8 graph no longer matches it."""
    root = model_dir()
    for name in ("text_minilm_l6", "text_minilm_l6_int8"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text((root / name / "card.json").read_text())
    assert query_encoder_name("text_minilm_l6", tmp_path) == "text_minilm_l6_int8"
    card = json.loads((tmp_path / "text_minilm_l6" / "card.json").read_text())
    card["sha256"] = "0" * 64
    (tmp_path / "text_minilm_l6" / "card.json").write_text(json.dumps(card))
    assert query_encoder_name("text_minilm_l6", tmp_path) == "text_minilm_l6"
    assert ModelCard.load(tmp_path / "text_minilm_l6_int8").raw["query_encoder_for"] == "text_minilm_l6"


def test_a_query_encodes_the_same_alone_or_in_a_batch(encoders):
    """Dynamic quantisation scales activations per call; the encoder must not let batch mates
    change a text's vector (the server batches queries of different users)."""
    _, int8_enc = encoders
    texts = ["a dog", "when does the man in the red shirt start to dance on the stage", "城市夜景"]
    together = int8_enc.encode(texts, "query")
    for t, row in zip(texts, together):
        np.testing.assert_array_equal(int8_enc.encode([t], "query")[0], row)


def test_multilingual_queries_go_through_its_float32_graph(shared_data):
    """E5 indexes encode queries with the passage graph's float32-activation twin (what libivcr's
    own encoder computes, tests/engine/test_native_encoder.py): every 4-bit product at accuracy
    level 0, the base card's query steps carried over, and the same model to rounding."""
    import onnx

    prepare_models()
    assert query_encoder_name("text_me5_small") == "text_me5_small_query"
    root = model_dir()
    graph = onnx.load(str(root / "text_me5_small_query" / "model.onnx"), load_external_data=False)
    levels = [a.i for n in graph.graph.node if n.op_type == "MatMulNBits" for a in n.attribute
              if a.name == "accuracy_level"]
    assert len(levels) == 72 and set(levels) == {0}
    base, query = TextEncoder("text_me5_small"), TextEncoder("text_me5_small_query")
    for key in ("chance_similarity", "query_prefix", "passage_prefix", "language_direction_sha256"):
        assert query.card.raw[key] == base.card.raw[key], key
    texts = annotation_queries(shared_data)[::4]
    a, b = base.encode(texts, "query"), query.encode(texts, "query")
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.9995, cos.min()
    assert np.abs(a - b).max() > 1e-4  # int8 activations against float32 ones: not the same graph


def test_queries_take_libivcr_s_encoder_where_it_has_one(monkeypatch, shared_data):
    """An E5 index's queries go through libivcr's encoder on a CPU that runs it (the vectors of the
    float32 query graph to cosine 0.99999, on the engine's threads); MiniLM's through its int8
    graph; IVCR_QUERY_ENCODER=onnx keeps E5's graph on ONNX Runtime, and so does a CPU or build
    without the native encoder. Passages are not its business."""
    from ivcr_engine.index import query_encoder as qe_module
    from ivcr_engine.index.query_encoder import NativeQueryEncoder, QueryEncoder
    from ivcr_engine.native import Unsupported

    prepare_models()
    e5 = {"text_model": "text_me5_small"}
    assert isinstance(QueryEncoder().text_encoder({"text_model": "text_minilm_l6"}), TextEncoder)
    monkeypatch.setenv("IVCR_QUERY_ENCODER", "onnx")
    onnx = QueryEncoder().text_encoder(e5)
    assert isinstance(onnx, TextEncoder) and onnx.card.name == "text_me5_small_query"
    monkeypatch.delenv("IVCR_QUERY_ENCODER")
    native = QueryEncoder().text_encoder(e5)
    flags = open("/proc/cpuinfo").read()
    if not all(f" {f}" in flags for f in ("avx2", "fma", "f16c")):
        assert isinstance(native, TextEncoder)  # (the refusal itself: tests/engine/test_native_encoder.py)
        return
    assert isinstance(native, NativeQueryEncoder) and native.card.name == "text_me5_small_query"
    assert native.chance == onnx.chance and native.dim == onnx.dim
    texts = annotation_queries(shared_data)[::5] + ["城市夜景", "一只鸟站在树枝上"]
    a, b = native.encode(texts, "query"), onnx.encode(texts, "query")
    assert ((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.99999
    assert native.count_tokens(texts) == onnx.count_tokens(texts)
    with pytest.raises(ValueError, match="encodes queries"):
        native.encode(texts, "passage")

    def refuse(*_):
        raise Unsupported("the native text encoder needs a CPU with AVX2")

    monkeypatch.setattr(qe_module, "NativeTextEncoder", refuse)
    assert isinstance(QueryEncoder().text_encoder(e5), TextEncoder)
