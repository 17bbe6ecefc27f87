"""Export a Hugging Face CLIP or SigLIP checkpoint to an image ONNX and a text ONNX, with a model
card, as a visual-text channel for ivcr_engine (text queries meet frames in one space).

    python models/export_clip.py CHECKPOINT OUT_DIR [--name clip_custom]

CHECKPOINT is a local folder or a hub name (this needs hub access, which the engine's default
set-up never uses). Both graphs return L2-normalised embeddings. Writes OUT_DIR/NAME/
{image.onnx, text.onnx, tokenizer.json, card.json}; any folder of that shape loads as
ivcr_engine.models.ClipEncoder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def export(checkpoint: str, out_dir: Path, name: str = "clip_custom", opset: int = 17) -> Path:
    import torch
    from transformers import AutoModel, AutoProcessor, AutoTokenizer

    model = AutoModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    try:
        image_proc = AutoProcessor.from_pretrained(checkpoint).image_processor
        size = image_proc.crop_size["height"] if getattr(image_proc, "crop_size", None) else image_proc.size["height"]
        mean, std = list(image_proc.image_mean), list(image_proc.image_std)
    except Exception:  # a bare checkpoint without a processor: the model's own config decides
        size = model.config.vision_config.image_size
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    target = out_dir / name
    target.mkdir(parents=True, exist_ok=True)

    def features(out):
        # transformers < 5 returns the projected tensor; 5.x a ModelOutput whose pooler_output is it
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    class Image(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, pixels):
            return torch.nn.functional.normalize(features(self.m.get_image_features(pixel_values=pixels)), dim=-1)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return torch.nn.functional.normalize(
                features(self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)), dim=-1)

    pixels = torch.zeros(1, 3, size, size)
    ids = torch.ones(1, 8, dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(Image().eval(), (pixels,), str(target / "image.onnx"), input_names=["pixels"],
                          output_names=["embedding"], dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        torch.onnx.export(Text().eval(), (ids, torch.ones_like(ids)), str(target / "text.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                                        "embedding": {0: "batch"}},
                          opset_version=opset, dynamo=False)
        dim = int(Text()(ids, torch.ones_like(ids)).shape[-1])
    tokenizer.backend_tokenizer.save(str(target / "tokenizer.json"))
    max_tokens = int(getattr(model.config.text_config, "max_position_embeddings", 77))
    card = {
        "name": name,
        "kind": "clip",
        "source": f"{model.config.model_type} checkpoint {checkpoint}",
        "dim": dim,
        "image_size": int(size),
        "resize": f"shorter side to {size}, centre crop {size}x{size}",
        "layout": "NCHW float32 RGB",
        "mean": [float(m) * 255 for m in mean],   # in 0..255 pixel units, like the frame encoder's card
        "std": [float(s) * 255 for s in std],
        "max_tokens": max_tokens,
        "pad_to_max": model.config.model_type == "siglip",  # SigLIP was trained on max-length padding
        "normalized": True,
        "sha256": hashlib.sha256((target / "image.onnx").read_bytes()).hexdigest(),
        "text_sha256": hashlib.sha256((target / "text.onnx").read_bytes()).hexdigest(),
    }
    (target / "card.json").write_text(json.dumps(card, indent=2))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", default="clip_custom")
    args = parser.parse_args(argv)
    print(export(args.checkpoint, args.out_dir, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
