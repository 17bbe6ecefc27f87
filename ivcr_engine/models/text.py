"""Text encoder on ONNX Runtime: `tokenizers` for tokenisation, the exported graph for the rest
(pooling and normalisation are inside the graph). No torch at run time."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .registry import DEFAULT_TEXT_MODEL, ModelCard, model_dir


def _session(onnx_path: Path, threads: int | None, tensorrt: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's workers otherwise spin for a while after each run, taking the cores the native search
    # needs right after a query is encoded (measured: both stages ran ~2x slower in a turn).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # CUDA / TensorRT providers are used when this onnxruntime build has them (the [gpu] extra).
    preferred = (["TensorrtExecutionProvider"] if tensorrt else []) + ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in preferred if p in ort.get_available_providers()]
    return ort.InferenceSession(str(onnx_path), opts, providers=providers)


ROLES = ("query", "passage")


def as_texts(texts: str | Sequence[str]) -> list[str]:
    """One text or several, as a list; anything but strings is a TypeError."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    return texts


class TokenCounter:
    """Each text's tokens under a model's tokenizer, without truncation or special tokens (what the
    OpenAI-shaped routes report as ``usage``); the tokenizer is read on first use."""

    def __init__(self, tokenizer_json: Path):
        self._path, self._tok = tokenizer_json, None

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if self._tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self._path))
            tok.no_truncation()
            tok.no_padding()
            self._tok = tok
        return [len(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]


def calibrated(cosines, chance: float) -> np.ndarray:
    """Cosines of a text model whose unrelated pairs reach ``chance`` (its card's
    ``chance_similarity``) on the scale the engine's thresholds were set on (MiniLM's, chance 0)."""
    return (np.asarray(cosines, np.float32) - chance) / (1.0 - chance)


class TextEncoder:
    """``encode(texts, role) -> (n, dim) float32`` unit vectors, in the sentence-transformers manner.

    ``role`` is "query" (what a user types) or "passage" (what is indexed): models trained with
    asymmetric prefixes (E5: "query: " / "passage: ") get them from their card; others ignore it.
    ``chance`` is the cosine that unrelated query/passage pairs typically reach under this model
    (its card's ``chance_similarity``; 0 for the MiniLM model the engine's constants were tuned
    on): E5's cosines crowd into 0.7-1.0, and ``calibrate`` maps them to MiniLM's scale."""

    def __init__(self, name: str = DEFAULT_TEXT_MODEL, root: Path | None = None, threads: int | None = None,
                 max_tokens: int | None = None):
        from tokenizers import Tokenizer

        self.card = ModelCard.load((root or model_dir()) / name)
        self.dim = self.card.dim
        self.max_tokens = int(max_tokens or self.card.raw.get("max_tokens", 256))
        self._tok = Tokenizer.from_file(str(self.card.path / "tokenizer.json"))
        self._tok.enable_truncation(self.max_tokens)
        self._tok.enable_padding()
        self.count_tokens = TokenCounter(self.card.path / "tokenizer.json")
        self._sess = _session(self.card.path / "model.onnx", threads)
        # Query encoders encode one text per call. MiniLM's int8 one is dynamically quantised:
        # it scales activations per call (per tensor), so in a batch a text would depend on its
        # batch mates. E5's float32 one computes each query as the engine's own encoder does.
        self._per_text = bool(self.card.raw.get("query_encoder_for"))
        self.prefixes = {r: str(self.card.raw.get(f"{r}_prefix", "")) for r in ROLES}
        self.chance = float(self.card.raw.get("chance_similarity", 0.0))
        direction = self.card.raw.get("language_direction")
        self._language = np.load(self.card.path / direction).astype(np.float32) if direction else None
        self.providers = self._sess.get_providers()
        self.encode(["warm-up"], "query")  # first run allocates and optimises; keep it out of request latency

    def finish(self, vectors: np.ndarray, role: str) -> np.ndarray:
        """The model's unit vectors as the engine uses them: queries without the card's language
        direction (see models/export_multilingual_text_encoder.py), renormalised."""
        v = np.asarray(vectors, np.float32)
        if self._language is None or role != "query" or not len(v):
            return v
        v = v - np.outer(v @ self._language, self._language)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def calibrate(self, cosines):
        """Cosines on the scale the engine's thresholds use: (s - chance) / (1 - chance)."""
        return calibrated(cosines, self.chance)

    def encode(self, texts: str | Sequence[str], role: str, batch_size: int = 64) -> np.ndarray:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        texts = [self.prefixes[role] + t for t in as_texts(texts)]
        out = np.zeros((len(texts), self.dim), np.float32)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        if self._per_text:
            batch_size = 1
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = self._tok.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            types = np.array([e.type_ids for e in enc], np.int64)
            (emb,) = self._sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            out[idx] = emb
        return self.finish(out, role)
