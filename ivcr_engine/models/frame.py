"""Frame encoder on ONNX Runtime: normalised NCHW frames -> unit 1280-d visual features and
ImageNet class probabilities; plus the concept projection of those probabilities into the text
space. Concept search is a weak stand-in for CLIP: it only knows ImageNet's 1000 classes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .registry import ModelCard, model_dir
from .text import _session


class FrameEncoder:
    def __init__(self, name: str = "frame_effnet_lite0", root: Path | None = None, threads: int | None = None):
        self.card = ModelCard.load((root or model_dir()) / name)
        self.dim = self.card.dim
        self.image_size = int(self.card.raw["image_size"])
        self.mean = np.asarray(self.card.raw["mean"], np.float32)
        self.std = np.asarray(self.card.raw["std"], np.float32)
        self.class_names: list[str] = json.loads((self.card.path / "class_names.json").read_text())
        self.class_text = np.load(self.card.path / "class_text.npy")
        self._sess = _session(self.card.path / "model.onnx", threads)
        self.providers = self._sess.get_providers()

    def normalize(self, frames_nhwc_uint8: np.ndarray) -> np.ndarray:
        """uint8 NHWC RGB frames of the model's size -> the float NCHW input (for callers whose
        decoder did not already produce it)."""
        x = np.asarray(frames_nhwc_uint8)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected uint8 frames of shape (N, {self.image_size}, {self.image_size}, 3), got "
                             f"{x.dtype} {x.shape}")
        return np.ascontiguousarray(((x.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2))

    def encode(self, pixels: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Normalised float32 NCHW frames -> (features (N, 1280) unit rows, probs (N, 1000))."""
        x = np.asarray(pixels)
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"expected float32 frames of shape (N, 3, {self.image_size}, {self.image_size}), got "
                             f"{x.dtype} {x.shape}")
        feats = np.zeros((len(x), self.dim), np.float32)
        probs = np.zeros((len(x), len(self.class_names)), np.float32)
        for s in range(0, len(x), batch_size):
            f, p = self._sess.run(None, {"pixels": np.ascontiguousarray(x[s:s + batch_size])})
            feats[s:s + len(f)], probs[s:s + len(p)] = f, p
        return feats, probs

    def concepts(self, probs: np.ndarray, top: int = 5) -> np.ndarray:
        """Concept vectors in the text space: the top classes' name embeddings weighted by their
        probabilities, normalised. (N, 1000) -> (N, text_dim)."""
        probs = np.asarray(probs, np.float32)
        idx = np.argpartition(-probs, top - 1, axis=1)[:, :top]
        w = np.take_along_axis(probs, idx, 1)
        vec = np.einsum("nk,nkd->nd", w, self.class_text[idx])
        vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec.astype(np.float32)

    def top_classes(self, probs: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        order = np.argsort(-probs, axis=1)[:, :top]
        return [[(self.class_names[i], float(p[i])) for i in row] for p, row in zip(probs, order)]
