"""Re-embed an index's text channels in another text model's space, from what the index keeps:
the timed speech, subtitle and on-screen lines (each line's own vector too) and each clip's top
ImageNet classes. No video is decoded
again (`ivcr index INDEX --rebuild-text [--text-model NAME]`).

The concept channel is rebuilt from the three classes (with their probabilities, rounded to two
decimals) that the index stores per clip, where ingest weighs the top five
(tests/index/test_multilingual.py compares rebuilt rows with freshly ingested ones: cosine 0.87
at worst on the flat class guesses of synthetic test patterns, and the same results).

Crash safety: the new rows are written to ``<channel>.bin.rebuild`` files and flushed; then a
marker in the index's metadata names the rebuild, the files replace the old ones, and one SQLite
transaction records the new model and clears the marker. A crash before the marker leaves the
old index untouched; one after it leaves an index that refuses to open until the rebuild is run
again (which starts over from the stored text). Readers that mapped the old files keep reading
them (the replaced files live on until unmapped) until they refresh.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models import FrameEncoder, TextEncoder
from ..models.registry import DEFAULT_TEXT_MODEL, index_text_model, model_dir
from .layout import PRESENCE_CHANNELS, TEXT_CHANNELS
from .store import IndexStore
from .video_encoder import check_text_model, texts_per_clip

REBUILD_MARKER = "rebuilding_text"
_CONCEPT = re.compile(r"(.+?) ([0-9.]+)(?:, |$)")


@dataclass
class RebuildReport:
    text_model: str
    previous: list[str] = field(default_factory=list)  # per store: the text model it had
    rows: int = 0
    texts: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        was = ", ".join(sorted(set(self.previous))) or "nothing"
        return (f"text channels re-embedded with {self.text_model} (were {was}): {self.rows} clips, "
                f"{self.texts} texts in {self.seconds:.1f} s")


def rebuild_text(index_dir: str | Path, text_model: str = DEFAULT_TEXT_MODEL, models_root: Path | None = None
                 ) -> RebuildReport:
    """Re-embed the text channels of an index (every shard of a sharded one) with ``text_model``."""
    from .manifest import is_sharded, open_stores

    if not (Path(index_dir) / "meta.sqlite").is_file() and not is_sharded(Path(index_dir)):
        raise FileNotFoundError(f"no index at {index_dir}; build one with `ivcr index`")
    check_text_model(text_model)
    root = models_root or model_dir()
    text = TextEncoder(text_model, root=root)
    frames = FrameEncoder(root=root, text_model=text_model)
    report = RebuildReport(text_model)
    t0 = time.perf_counter()
    stores = open_stores(index_dir)
    try:
        for store in stores:
            report.previous.append(index_text_model(store.settings()))
            rows, texts = _rebuild_store(store, text, frames)
            report.rows += rows
            report.texts += texts
    finally:
        for store in stores:
            store.close()
    report.seconds = time.perf_counter() - t0
    return report


def concept_rows(concepts: list[str | None], frames: FrameEncoder) -> np.ndarray:
    """Concept vectors from stored "name p, name p, name p" strings (a clip without one: zeros)."""
    index = {}
    for i, name in enumerate(frames.class_names):
        index.setdefault(name, i)  # a few ImageNet names repeat; ingest's string cannot tell them apart
    classes = np.zeros((len(concepts), 3), np.int64)
    weights = np.zeros((len(concepts), 3), np.float32)
    for r, s in enumerate(concepts):
        pairs = [(index[n], float(p)) for n, p in _CONCEPT.findall(s or "") if n in index][:3]
        for k, (i, p) in enumerate(pairs):
            classes[r, k], weights[r, k] = i, p
    return frames.concept_vectors(classes, weights)


def _rebuild_store(store: IndexStore, text: TextEncoder, frames: FrameEncoder) -> tuple[int, int]:
    folder = store.root / "vectors"
    with store.write_lock():
        snap = store.snapshot(allow_rebuild=True)
        times = store.clip_times(snap.rows)
        chans = {c: spec for c, spec in snap.channels.items() if c in TEXT_CHANNELS}
        n_texts = 0
        new_files = {}
        for name, spec in chans.items():
            dim = text.dim + (name in PRESENCE_CHANNELS)
            tmp = folder / f"{name}.bin.rebuild"
            out = np.memmap(tmp, dtype=spec.dtype, mode="w+", shape=(max(snap.rows, 1), dim))
            for v in snap.videos:
                a, n = int(v["first_row"]), int(v["n_clips"])
                if name == "concept":
                    out[a:a + n] = concept_rows(store.concepts(range(a, a + n)), frames)
                    continue
                lines = [(s, e, t) for src, s, e, t in store.texts(v["id"]) if src == name]
                per_clip = texts_per_clip(times[a:a + n], lines)
                has = [i for i, t in enumerate(per_clip) if t]
                block = np.zeros((n, dim), np.float32)
                if has:
                    block[has, :-1] = text.encode([per_clip[i] for i in has], "passage")
                    block[has, -1] = 1.0
                    n_texts += len(has)
                out[a:a + n] = block
            out.flush()
            del out
            with open(tmp, "r+b") as f:  # exactly the committed rows, on disk before anything is replaced
                f.truncate(snap.rows * dim * np.dtype(spec.dtype).itemsize)
                os.fsync(f.fileno())
            new_files[name] = (tmp, dim)
        # each line's own vector (moments snap to the lines matching a query): written in the same
        # transaction that records the new model, so lines and channels never disagree
        lines = store.line_texts()
        distinct = sorted({t for _, t in lines})
        encoded = dict(zip(distinct, text.encode(distinct, "passage"))) if distinct else {}
        line_vectors = {rowid: encoded[t] for rowid, t in lines}
        store.set_meta(REBUILD_MARKER, json.dumps({"text_model": text.card.name, "started": time.time()}))
        for name, (tmp, _) in new_files.items():
            tmp.replace(store.vector_path(name))
        # first-stage copies of the old text rows (folded, or of one text channel): none may grow
        # into the new model's space (first_stage.py)
        for p in [*folder.glob("first.text-*"), *(q for name in new_files for q in folder.glob(f"first.{name}.*"))]:
            p.unlink(missing_ok=True)
        settings = store.settings() | {"text_model": text.card.name, "line_text_model": text.card.name}
        store.record_text_model(settings, {name: dim for name, (_, dim) in new_files.items()}, text.card.name,
                                text.card.raw["sha256"], clear=REBUILD_MARKER, line_vectors=line_vectors)
    return snap.rows, n_texts
