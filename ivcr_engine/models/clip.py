"""A CLIP-family model (exported by models/export_clip.py) as a visual-text encoder: frames and
text land in one space, so text queries reach visual content directly."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .registry import ModelCard
from .text import _session


class ClipEncoder:
    def __init__(self, folder: str | Path, threads: int | None = None):
        from tokenizers import Tokenizer

        self.card = ModelCard.load(Path(folder))
        if self.card.kind != "clip":
            raise ValueError(f"{folder} holds a {self.card.kind!r} model, not a CLIP export")
        self.dim = self.card.dim
        self.image_size = int(self.card.raw["image_size"])
        self.mean = np.asarray(self.card.raw["mean"], np.float32)
        self.std = np.asarray(self.card.raw["std"], np.float32)
        self._tok = Tokenizer.from_file(str(self.card.path / "tokenizer.json"))
        max_tokens = int(self.card.raw.get("max_tokens", 77))
        self._tok.enable_truncation(max_tokens)
        self._tok.enable_padding(length=max_tokens if self.card.raw.get("pad_to_max") else None)
        self._image = _session(self.card.path / "image.onnx", threads)
        self._text = _session(self.card.path / "text.onnx", threads)

    def encode_images(self, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Normalised float32 NCHW frames (the card's mean/std) -> (N, dim) unit rows."""
        x = np.asarray(pixels)
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"expected float32 frames (N, 3, {self.image_size}, {self.image_size}), got {x.dtype} {x.shape}")
        out = [self._image.run(None, {"pixels": np.ascontiguousarray(x[s:s + batch_size])})[0]
               for s in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: str | Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        enc = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        return self._text.run(None, {"input_ids": ids, "attention_mask": mask})[0]
