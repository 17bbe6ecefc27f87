"""Query text -> the rows an index scores with; the engine's one cache of query vectors.

A ``QueryEncoder`` is made once per process face (a server, a CLI run) and handed to every index
opened on it: the single index, the same folder opened again, a sharded one.
It loads each text model's query encoder once and keeps recent texts' unit vectors keyed by
(query encoder, text), so a text a turn encoded is not encoded again by the batcher, by the
server's candidate moments, by the folder opened again, or by a sharded index of the same model; a text
rebuild that changes the model simply misses the cache.

An index asks through ``IndexQueries``, the encoder bound to its text model and channel layout:
``rows`` shapes the unit vectors into the channels' query rows (calibration and the presence
baseline, see ``rows``), ``unit``/``chance`` give the router plain sentence vectors and the
model's chance similarity.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidArgument, NotFound
from ..models import FrameEncoder, TextEncoder
from ..models.registry import ModelCard, index_text_model, model_dir, query_encoder_name
from ..models.text import TokenCounter, as_texts
from ..native import NativeTextEncoder, QueryShape, Unsupported
from .layout import LEXICAL, TEXT_CHANNELS
from .image_query import image_rows, read_image
from .protocol import check_texts, lexical_rows

QUERY_CACHE = 4096  # recent texts kept, over all models (a 384-d vector is 1.5 kB)


class QueryEncoder:
    """``text_encoder``: a caller's encoder, used for every index whose text model it fits (one
    without a model card is a test's stand-in and fits any)."""

    def __init__(self, models_root: Path | None = None, text_encoder=None, cache_size: int = QUERY_CACHE):
        self.models_root = Path(models_root) if models_root is not None else model_dir()
        self._given = text_encoder
        self._encoders: dict[str, TextEncoder] = {}
        self._frames: dict[tuple, FrameEncoder] = {}
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._size = int(cache_size)
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._shapes: dict[tuple, QueryShape] = {}
        self.encoded = 0  # texts this object handed to an encoder (what the cache saved is the rest)

    def text_encoder(self, settings: dict):
        """The encoder of queries for an index with these settings (loaded on first use)."""
        model = index_text_model(settings)
        if _fits(self._given, model, self.models_root):
            return self._given
        name = query_encoder_name(model, self.models_root)
        with self._load_lock:
            if name not in self._encoders:
                self._encoders[name] = _query_encoder(name, model, self.models_root)
            return self._encoders[name]

    def frame_encoder(self, settings: dict) -> FrameEncoder:
        """The frame model an index with these settings was built with (loaded on first use; a
        query picture goes through it as a clip's frame did at ingest)."""
        key = (str(settings.get("frame_model") or "frame_effnet_lite0"), index_text_model(settings))
        with self._load_lock:
            if key not in self._frames:
                self._frames[key] = FrameEncoder(key[0], root=self.models_root, text_model=key[1])
            return self._frames[key]

    def shape(self, settings: dict) -> QueryShape:
        """The engine's query shaping for an index with these settings (its text model's chance,
        the mean passage of its frame model's class texts), made on first use."""
        key = (index_text_model(settings), str(settings.get("frame_model") or ""))
        with self._load_lock:
            if key not in self._shapes:
                self._shapes[key] = QueryShape(self.models_root, key[0], key[1])
            return self._shapes[key]

    def bind(self, settings: dict, channels, clip=None) -> "IndexQueries":
        return IndexQueries(self, settings, tuple(channels), clip)

    def vectors(self, key: str, texts: Sequence[str], encode) -> np.ndarray:
        """(B, d) vectors of ``texts`` under the encoder named ``key``; ``encode(missing) -> rows``
        runs once, over the texts the cache lacks."""
        with self._lock:
            got = [self._cache.get((key, t)) for t in texts]
            for t, g in zip(texts, got):
                if g is not None:
                    self._cache.move_to_end((key, t))
        missing = list(dict.fromkeys(t for t, g in zip(texts, got) if g is None))
        if missing:
            fresh = np.asarray(encode(missing), np.float32)
            new = dict(zip(missing, fresh))
            with self._lock:
                self.encoded += len(missing)
                for t, v in new.items():
                    self._cache[(key, t)] = v
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
            got = [new[t] if g is None else g for t, g in zip(texts, got)]
        return np.stack(got)

    def cached(self, key: str, texts: Sequence[str]) -> np.ndarray | None:
        """The vectors of ``texts`` when every one is cached, else None (nothing is encoded)."""
        with self._lock:
            got = [self._cache.get((key, t)) for t in texts]
        return None if any(g is None for g in got) else np.stack(got)


class IndexQueries:
    """The query encoder as one index uses it (its text model, its channels, its CLIP model)."""

    def __init__(self, shared: QueryEncoder, settings: dict, channels: tuple, clip=None):
        self.shared, self.settings, self.channels, self.clip = shared, settings, channels, clip
        self._encoder = None

    @property
    def text_encoder(self):
        if self._encoder is None:
            self._encoder = self.shared.text_encoder(self.settings)
        return self._encoder

    @property
    def _key(self) -> str:
        card = getattr(self.text_encoder, "card", None)
        return card.name if card is not None else f"caller-{id(self.text_encoder)}"

    @property
    def chance(self) -> float:
        """Cosine that unrelated sentences reach under this text model (0 for MiniLM)."""
        return float(getattr(self.text_encoder, "chance", 0.0))

    def unit(self, texts: Sequence[str]) -> np.ndarray:
        """(B, d) unit sentence vectors in the query role (what the router compares)."""
        texts = check_texts(texts)
        return self.shared.vectors(self._key, texts, lambda t: self.text_encoder.encode(t, "query"))

    def rows(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Query rows (B, d) for every text-space channel of the index, from one encoder call over
        the texts not cached, shaped by the engine (``QueryShape``, csrc/engine/query_shape.h: the
        one definition the native encoder's rows use too).

        Scores are calibrated, (s - chance) / (1 - chance), as dot products: the unit query is
        scaled by 1 / (1 - chance), and the presence channels get the constant
        -TEXT_BASELINE - chance / (1 - chance) in their last dimension, which only clips with
        text carry (in the concept channel every clip would get the same constant, which changes
        no ranking, so it is left out there).

        ``chance`` is the query's own: the model's, moved by how far the query's cosine to the
        model's mean passage (its frame model's ImageNet class names in this text space) lies from
        a typical query's. A keyword, or a Chinese query over English lines, sits closer to every
        passage than a sentence does, so one chance for all queries left its right line below the
        baseline and let the concepts decide."""
        return self._shape(self.unit(texts), texts)

    def image(self, picture) -> dict[str, np.ndarray]:
        """A picture's query rows ({"visual": (1, d)}, image_query.py): ``picture`` is its encoded
        bytes (JPEG, PNG, WebP; checked and decoded safely) or (H, W, 3) uint8 RGB pixels."""
        if "visual" not in self.channels:
            raise InvalidArgument("this index has no visual channel to search by picture")
        rgb = read_image(picture) if isinstance(picture, (bytes, bytearray, memoryview)) else picture
        return image_rows(self.shared.frame_encoder(self.settings), rgb)

    def cached_rows(self, texts: Sequence[str]) -> dict[str, np.ndarray] | None:
        """``rows`` when every text's vectors are cached (nothing waits for an encoder), else None."""
        texts = list(texts)
        unit = self.shared.cached(self._key, texts)
        if unit is None:
            return None
        if self.clip is not None and self.shared.cached(self._clip_key, texts) is None:
            return None
        return self._shape(unit, texts)

    @property
    def _clip_key(self) -> str:
        return f"clip:{getattr(self.clip, 'folder', id(self.clip))}"

    def _shape(self, unit: np.ndarray, texts: Sequence[str]) -> dict[str, np.ndarray]:
        out = self.shared.shape(self.settings).rows(unit, [ch for ch in TEXT_CHANNELS if ch in self.channels])
        out[LEXICAL] = lexical_rows(list(texts))  # the words, for the lexical channel (lexical.py)
        if self.clip is not None:
            out["clip"] = self.shared.vectors(self._clip_key, list(texts), self.clip.encode_texts)
        return out


class NativeQueryEncoder:
    """The queries of a text model that libivcr encodes itself (the default multilingual one, on a
    CPU with AVX2, FMA and F16C): the float32 forward pass the model's query graph computes on ONNX
    Runtime (cosine >= 0.99999 to it, tests/engine/test_native_encoder.py), on the engine's own
    threads, so the query of a Python turn is the vector ``ivcr_search`` ranks a C host's by, and
    it costs 0.75-0.9x the graph's time (docs/BENCHMARKS.md). Answers to what ``TextEncoder``
    answers for queries; passages keep the text model's graph."""

    def __init__(self, name: str, model: str, root: Path):
        self.card = ModelCard.load(root / name)  # the query encoder's card: its name, its chance
        self._native = NativeTextEncoder(root, model)
        self.dim = self._native.dim
        self.chance = float(self.card.raw.get("chance_similarity", 0.0))
        self.providers = ["libivcr"]
        self.count_tokens = TokenCounter(self.card.path / "tokenizer.json")
        self._native.encode(["warm-up"])  # the first pass allocates: kept out of request latency

    def encode(self, texts: str | Sequence[str], role: str) -> np.ndarray:
        if role != "query":
            raise ValueError(f"libivcr encodes queries; {role!r} texts take the text model's graph")
        return self._native.encode(as_texts(texts))


def _query_encoder(name: str, model: str, root: Path):
    """The encoder of the queries of an index of text model ``model``, whose query model is
    ``name``: libivcr's own where it has one for the model and this CPU runs it, unless the index
    keeps the model's own graph (``IVCR_QUERY_ENCODER=base``), the user asks for ONNX Runtime
    (``IVCR_QUERY_ENCODER=onnx``) or ONNX Runtime runs the graph on a GPU; else the graph on ONNX
    Runtime."""
    if name != model and os.environ.get("IVCR_QUERY_ENCODER", "").lower() != "onnx":
        onnx = TextEncoder(name, root=root) if _gpu_runtime() else None
        if onnx is not None and onnx.providers[0] in GPU_PROVIDERS:
            return onnx
        try:
            return NativeQueryEncoder(name, model, root)
        except (Unsupported, NotFound):  # no native encoder for it here (NotFound: a model not prepared, or no libivcr)
            return onnx or TextEncoder(name, root=root)
    return TextEncoder(name, root=root)


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _gpu_runtime() -> bool:
    """Whether this onnxruntime build has a GPU provider (whether a GPU is there, its session says)."""
    import onnxruntime as ort

    return any(p in ort.get_available_providers() for p in GPU_PROVIDERS)


def _fits(text_encoder, model: str, models_root: Path) -> bool:
    """Whether a caller's ``text_encoder`` encodes queries for an index of text model ``model``."""
    if text_encoder is None:
        return False
    card = getattr(text_encoder, "card", None)
    if card is None:
        return True
    return card.name in (model, query_encoder_name(model, models_root))
