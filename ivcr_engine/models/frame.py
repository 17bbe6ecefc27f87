"""Frame encoder on ONNX Runtime: normalised NCHW frames -> unit 1280-d visual features and
ImageNet class probabilities; plus the concept projection of those probabilities into the text
space. Concept search is a weak stand-in for CLIP: it only knows ImageNet's 1000 classes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .registry import DEFAULT_TEXT_MODEL, ModelCard, model_dir
from .text import _session


class FrameEncoder:
    """``text_model`` picks the text space the concept vectors are placed in (an index's own)."""

    def __init__(self, name: str = "frame_effnet_lite0", root: Path | None = None, threads: int | None = None,
                 text_model: str = DEFAULT_TEXT_MODEL):
        self.card = ModelCard.load((root or model_dir()) / name)
        self.dim = self.card.dim
        self.image_size = int(self.card.raw["image_size"])
        self.mean = np.asarray(self.card.raw["mean"], np.float32)
        self.std = np.asarray(self.card.raw["std"], np.float32)
        self.class_names: list[str] = json.loads((self.card.path / "class_names.json").read_text())
        class_file = self.card.raw.get("class_text", {}).get(text_model)
        if class_file is None:
            raise FileNotFoundError(f"{name} has no class names embedded by {text_model!r}; run `ivcr models prepare`")
        self.class_text = np.load(self.card.path / class_file)
        # How a clip's top classes become one concept vector (the text model's card says):
        # "mixture": their name embeddings weighted by probability, normalised (tuned on MiniLM,
        # whose class embeddings are near orthogonal). "expected": the probability-weighted sum
        # of the class embeddings minus their mean, not normalised, so a query scores the clip's
        # expected similarity above an average class. Under E5, whose class embeddings all sit
        # near cosine 0.8, normalising a flat mixture of weak guesses lifts it above a confident
        # right class ("a dog" put dog_walk.mp4 6th of 8); "expected" puts 10 of 14 visual queries
        # on the shared videos first against 7 (MiniLM with "mixture": 6; with "expected": 4).
        text_card = ModelCard.load((root or model_dir()) / text_model)
        self.concept_pooling = text_card.raw.get("concept_pooling", "mixture")
        if self.concept_pooling == "expected":
            self.class_text = self.class_text - self.class_text.mean(axis=0)
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
        """Concept vectors in the text space from the top classes' name embeddings and their
        probabilities (see ``concept_pooling``). (N, 1000) -> (N, text_dim)."""
        probs = np.asarray(probs, np.float32)
        idx = np.argpartition(-probs, top - 1, axis=1)[:, :top]
        return self.concept_vectors(idx, np.take_along_axis(probs, idx, 1))

    def concept_vectors(self, classes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(N, k) class numbers and their probabilities -> (N, text_dim) concept vectors."""
        vec = np.einsum("nk,nkd->nd", np.asarray(weights, np.float32), self.class_text[np.asarray(classes)])
        if self.concept_pooling == "mixture":
            vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec.astype(np.float32)

    def top_classes(self, probs: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        order = np.argsort(-probs, axis=1)[:, :top]
        return [[(self.class_names[i], float(p[i])) for i in row] for p, row in zip(probs, order)]
