"""What the export scripts share: their command line, the card they write, and the sentence
pipeline (transformer -> masked mean -> unit length) that the text graphs end with."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Callable


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_card(target: Path, card: dict, graph: Path) -> None:
    """card.json beside the graph, with the graph's sha256 (what `ivcr models prepare` verifies)."""
    (target / "card.json").write_text(json.dumps(card | {"sha256": sha256(graph)}, indent=2))


def run(export: Callable[[Path], Path], doc: str | None, argv: list[str] | None = None) -> int:
    """`python models/<script>.py OUT_DIR`: export into OUT_DIR and print the model's folder."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("out_dir", type=Path)
    print(export(parser.parse_args(argv).out_dir))
    return 0


def pooled_text_encoder(transformer):
    """A torch module: token ids -> the transformer -> masked mean over tokens -> unit length
    (sentence-transformers' and E5's pooling)."""
    import torch

    class PooledEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return PooledEncoder().eval()


def export_text_graph(model, onnx_path: Path, opset: int = 17) -> None:
    """ONNX graph with dynamic batch and token axes; inputs named as `TextEncoder` feeds them."""
    import torch

    ids = torch.ones((2, 8), dtype=torch.int64)
    names = ("input_ids", "attention_mask", "token_type_ids")
    with torch.no_grad():
        torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(onnx_path), input_names=list(names),
                          output_names=["embedding"],
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}},
                          opset_version=opset, dynamo=False)


if __name__ == "__main__":
    sys.exit("models/common.py is a module for the export scripts, not a script")
