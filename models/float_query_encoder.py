"""Derive the float32 query encoder of multilingual-e5-small from its exported graph: the same
graph with every 4-bit product at ONNX Runtime's accuracy level 0 (float32 activations) instead
of 4 (int8 activations in blocks of 32).

    python models/float_query_encoder.py MODELS_DIR

Reads MODELS_DIR/text_me5_small and writes MODELS_DIR/text_me5_small_query/{model.onnx,
tokenizer.json, language_direction.npy, card.json}.

Why: a query is encoded on two paths, the Python face's (ONNX Runtime, the way to CUDA and
TensorRT) and the engine's own (libivcr's float32 forward pass, csrc/engine/e5_float.c, for C
hosts). Two int8 engines round their activations differently: their query vectors met at cosine
~0.9999 and swapped near-tied 10th and 11th videos for about a quarter of the queries at 1M clips.
In float32 both compute the dequantised model to rounding (max difference 1.4e-7 to torch on 160
annotation queries), and rank alike. Passages keep the int8 graph: ingest is where its speed
(1.15-1.5x) matters, and a query in float32 meets them as well as before.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run, sha256, write_card  # noqa: E402

NAME = "text_me5_small_query"
BASE = "text_me5_small"


def float_activations(graph) -> int:
    """Set every MatMulNBits node to accuracy level 0; returns how many there are."""
    from onnx import helper

    n = 0
    for node in graph.node:
        if node.op_type != "MatMulNBits":
            continue
        kept = [a for a in node.attribute if a.name != "accuracy_level"]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("accuracy_level", 0)])
        n += 1
    return n


def export(out_dir: Path) -> Path:
    import onnx

    from ivcr_engine.models.registry import card_digest

    base = out_dir / BASE
    base_card = json.loads((base / "card.json").read_text())
    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(base / "model.onnx"))
    nodes = float_activations(model.graph)
    if not nodes:
        raise ValueError(f"{base / 'model.onnx'} has no 4-bit products to run in float32")
    onnx_path = target / "model.onnx"
    onnx.save_model(model, str(onnx_path))
    for name in ("tokenizer.json", base_card["language_direction"]):
        shutil.copy(base / name, target / name)
    card = {k: base_card[k] for k in ("kind", "dim", "max_tokens", "normalized", "pooling", "inputs", "query_prefix",
                                      "passage_prefix", "languages", "chance_similarity", "language_direction",
                                      "language_direction_sha256")}
    card |= {
        "name": NAME,
        "source": f"{BASE}'s graph with float32 activations in its {nodes} 4-bit products (accuracy level 0)",
        "weights": "4-bit blocks of 32 (MatMulNBits), float32 activations",
        "query_encoder_for": BASE,
        "base_sha256": base_card["sha256"],
        "text_cards": {BASE: card_digest(base)},
    }
    if sha256(target / card["language_direction"]) != card["language_direction_sha256"]:
        raise ValueError(f"{base / card['language_direction']} does not match its card; run `ivcr models prepare --force`")
    write_card(target, card, onnx_path)
    return target


if __name__ == "__main__":
    sys.exit(run(export, __doc__))
