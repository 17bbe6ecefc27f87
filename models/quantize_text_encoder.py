"""Derive the int8 query encoder from the exported MiniLM-L6 graph (ONNX Runtime dynamic
quantisation), for the one text a turn encodes on its latency path.

    python models/quantize_text_encoder.py MODELS_DIR

Reads MODELS_DIR/text_minilm_l6 and writes MODELS_DIR/text_minilm_l6_int8/{model.onnx,
tokenizer.json, card.json}. Quantised: the weight matrices of the query/key/value projections and
of the feed-forward expansion (int8 per output channel, activations quantised per call). Kept in
float: the attention products, the attention output and the feed-forward contraction, whose
inputs carry the outliers that cost the most accuracy (measured on 800 annotation sentences:
quantising everything gave cosine 0.987 at worst to the float model, this split 0.994).
Indexed passages keep the float model; only queries use this one.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run, write_card  # noqa: E402

NAME = "text_minilm_l6_int8"
BASE = "text_minilm_l6"


def _kept_in_float(node_name: str) -> bool:
    attention_product = node_name.endswith("/self/MatMul") or node_name.endswith("/self/MatMul_1")
    attention_output = "/attention/output/" in node_name
    ffn_contraction = "/output/dense/" in node_name and "/attention/" not in node_name
    return attention_product or attention_output or ffn_contraction


def export(out_dir: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    base = out_dir / BASE
    base_card = json.loads((base / "card.json").read_text())
    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    graph = onnx.load(str(base / "model.onnx"))
    matmuls = [n.name for n in graph.graph.node if n.op_type == "MatMul"]
    onnx_path = target / "model.onnx"
    quantize_dynamic(str(base / "model.onnx"), str(onnx_path), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=[n for n in matmuls if _kept_in_float(n)])
    shutil.copy(base / "tokenizer.json", target / "tokenizer.json")
    card = {k: base_card[k] for k in ("kind", "dim", "max_tokens", "normalized", "pooling", "inputs")}
    card |= {
        "name": NAME,
        "source": f"{BASE} quantised by onnxruntime.quantization.quantize_dynamic (int8 weights per channel)",
        "query_encoder_for": BASE,
        "base_sha256": base_card["sha256"],
        "quantized_matmuls": sum(not _kept_in_float(n) for n in matmuls),
        "float_matmuls": sum(_kept_in_float(n) for n in matmuls),
    }
    write_card(target, card, onnx_path)
    return target


if __name__ == "__main__":
    sys.exit(run(export, __doc__))
