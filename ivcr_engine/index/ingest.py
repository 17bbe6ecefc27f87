"""Ingest: from videos on disk to an index. For each video, on a fixed clip grid (default 2 s):

    visual    EfficientNet-Lite0 features of the frame at each clip's centre (1280-d)
    concept   those frames' top ImageNet classes placed in the text space (384-d)
    speech    Whisper transcript lines overlapping the clip, embedded by the text model (384-d)
    subtitle  subtitle cues (embedded streams and sidecar .srt/.vtt) overlapping the clip (384-d)
    ocr       on-screen text (captions burned into the picture, slides, signs, tickers) read by
              PP-OCRv4 in the clip-centre frames, merged into timed lines (onscreen.py) and
              embedded like speech (384-d); off with ``ocr=False`` (``ivcr index --no-ocr``)

The text model (multilingual-e5-small by default, MiniLM-L6 for English-only indexes built before
it) is recorded in the index's settings; every text channel lives in its space.
    clip      (optional) a CLIP-family image embedding of the same frame, when the index is built
              with a model exported by models/export_clip.py: text queries then meet frames directly

The speech, subtitle and ocr channels carry one extra "presence" dimension (1 where the clip has text,
0 where not) so a query can subtract a chance-level baseline from clips that have text: unrelated
sentences still score ~0.1-0.2 (on MiniLM's scale), and without the baseline every talking video would
outrank silent ones on any query. A clip without text scores exactly 0 there. Decoding runs
one video ahead in a background thread (the native decoder releases the GIL) while the current
video is encoded and written, so the stages overlap.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import decode
from ..models import ClipEncoder, FrameEncoder, SpeechRecognizer, TextEncoder
from ..models.ocr import TextReader
from ..models.registry import DEFAULT_TEXT_MODEL, TEXT_MODELS, index_text_model, model_dir
from .onscreen import OCR_LONG_SIDE, read_video_text, timed_lines
from .partition import store_for
from .store import ChannelSpec, IndexStore, VideoRecord

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
TEXT_CHANNELS = ("concept", "speech", "subtitle", "ocr")  # channels in the text encoder's space
PRESENCE_CHANNELS = ("speech", "subtitle", "ocr")          # ... with a trailing presence dimension
# Timed text lines kept per video (VideoRecord.texts), by source, in the order evidence lists them.
TEXT_SOURCES = ("speech", "subtitle", "ocr")
ALL_CHANNELS = ("visual",) + TEXT_CHANNELS
MANIFEST_SUFFIXES = {".txt", ".jsonl"}


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)      # already indexed (same content, same path)
    aliased: list[tuple[str, str]] = field(default_factory=list)  # (new path, stored video's path): same content
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    clips: int = 0
    seconds_of_video: float = 0.0
    stage_seconds: dict = field(default_factory=lambda: {"decode": 0.0, "frames": 0.0, "speech": 0.0, "ocr": 0.0,
                                                          "text": 0.0, "write": 0.0})
    wall_seconds: float = 0.0
    ocr: bool | None = None   # whether the videos of this run got an ocr channel (None: not decided)
    notes: list[str] = field(default_factory=list)  # what the user should know about this run

    def add(self, rec: VideoRecord) -> None:
        self.added.append(rec.path)
        self.clips += len(rec.clip_times)
        self.seconds_of_video += rec.duration

    def summary(self) -> str:
        lines = [f"videos added {len(self.added)}, skipped (already indexed) {len(self.skipped)}, "
                 f"aliased (same content as a stored video) {len(self.aliased)}, "
                 f"failed {len(self.failed)}, removed {len(self.removed)}",
                 f"clips {self.clips}, video {self.seconds_of_video / 3600:.3f} h, wall {self.wall_seconds:.1f} s",
                 "stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in self.stage_seconds.items())]
        if self.ocr is not None:
            lines.append(f"on-screen text (ocr channel): {'on' if self.ocr else 'off'}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  alias: {p} = {stored}" for p, stored in self.aliased]
        lines += [f"  failed: {p}: {why}" for p, why in self.failed]
        return "\n".join(lines)

    def exit_code(self) -> int:
        """The CLI contract: 0 every input done, 3 some inputs failed, 1 nothing could be done."""
        if not self.failed:
            return 0
        return 3 if (self.added or self.skipped or self.aliased or self.removed) else 1

    def to_json(self) -> dict:
        return {"added": self.added, "skipped": self.skipped,
                "aliased": [{"path": p, "same_as": s} for p, s in self.aliased],
                "failed": [{"path": p, "error": e} for p, e in self.failed], "removed": self.removed,
                "clips": self.clips, "seconds_of_video": round(self.seconds_of_video, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
                "wall_seconds": round(self.wall_seconds, 3), "ocr": self.ocr, "notes": self.notes,
                "exit_code": self.exit_code()}


def content_hash(path: Path, block: int = 1 << 22) -> str:
    """Identity of a file's content: its size and the BLAKE2b of its first and last 4 MiB. Cheap on
    long videos, and a changed file (re-encoded, trimmed, replaced) gets a new identity."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(block, size - block))
            h.update(f.read(block))
    return h.hexdigest()


def collect_videos(inputs: Iterable[str | Path], failed: list | None = None) -> list[Path]:
    """Folders (searched recursively), single files, and manifests: .txt (one path per line, '#'
    comments) or .jsonl ({"path": ...} per line); relative paths in a manifest are relative to the
    manifest. A manifest is read the same way wherever it appears, given directly or found in a
    folder (and may name folders or other manifests). A manifest that cannot be read is appended
    to ``failed`` as (path, why) when given, else raised as a ValueError."""
    out: list[Path] = []
    reading: set[Path] = set()  # manifests being read: one that lists itself is not followed again

    def add(p: Path) -> None:
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES | MANIFEST_SUFFIXES:
                    add(q)
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            key = p.resolve()
            if key in reading:
                return
            reading.add(key)
            try:
                for entry in read_manifest(p):
                    add(entry)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                if failed is None:
                    raise ValueError(f"manifest {p}: {exc}") from exc
                failed.append((str(p), f"unreadable manifest: {exc}"))
        else:
            out.append(p)

    for item in inputs:
        add(Path(item))
    seen, unique = set(), []
    for p in out:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(Path(key))
    return unique


def read_manifest(p: Path) -> list[Path]:
    """The paths a .txt or .jsonl manifest lists, relative to the manifest's folder."""
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".txt":
        lines = [l.strip() for l in text.splitlines()]
        return [p.parent / l for l in lines if l and not l.startswith("#")]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise ValueError(f"line {n} has no \"path\" string")
            out.append(p.parent / entry["path"])
    return out


def clip_grid(duration: float, clip_seconds: float) -> np.ndarray:
    """(n, 2) clip windows covering [0, duration]; the last one may be shorter."""
    n = max(1, math.ceil(duration / clip_seconds - 1e-9))
    starts = np.arange(n) * clip_seconds
    return np.stack([starts, np.minimum(starts + clip_seconds, duration)], axis=1)


def texts_per_clip(clips: np.ndarray, lines: Sequence[tuple[float, float, str]]) -> list[str]:
    """The text of every line overlapping each clip, joined in time order."""
    out = []
    for a, b in clips:
        hit = [t for s, e, t in lines if s < b and e > a]
        out.append(" ".join(hit))
    return out


class VideoEncoder:
    """The encoders (loaded once) and the decode + encode of one video into a `VideoRecord`; no
    index. `Ingestor` writes what it makes; on Ray, each ingest worker holds one."""

    def __init__(self, clip_seconds: float = 2.0, speech: bool = True, models_root: Path | None = None,
                 threads: int | None = None, clip_model: str | Path | None = None, ocr: bool = True,
                 ocr_long_side: int = OCR_LONG_SIDE, text_model: str | None = None):
        root = models_root or model_dir()
        self.clip_seconds = float(clip_seconds)
        text_model = check_text_model(text_model or DEFAULT_TEXT_MODEL)
        self.text = TextEncoder(text_model, root=root, threads=threads)
        self.frames = FrameEncoder(root=root, threads=threads, text_model=text_model)
        self.speech = SpeechRecognizer(root=root, threads=threads) if speech else None
        self.ocr = TextReader(root=root, threads=threads) if ocr else None
        self.ocr_long_side = int(ocr_long_side)
        self.clip = ClipEncoder(clip_model, threads=threads) if clip_model else None
        self.clip_model = str(Path(clip_model).resolve()) if clip_model else None

    def layout(self) -> tuple[dict, list[ChannelSpec]]:
        """The settings and channels an index written by this encoder has."""
        # line_text_model: the model of the text lines' own vectors (store.py texts.vec); moments snap
        # to lines only while it is the index's text model (a re-embedded index must redo them too)
        settings = {"clip_seconds": self.clip_seconds, "text_model": self.text.card.name,
                    "line_text_model": self.text.card.name,
                    "frame_model": self.frames.card.name, "speech_model": self.speech.card.name if self.speech else None,
                    "clip_model": self.clip_model, "ocr_model": self.ocr.card.name if self.ocr else None,
                    "ocr_long_side": self.ocr_long_side if self.ocr else None}
        specs = [ChannelSpec("clip", self.clip.dim, model=self.clip.card.name,
                             model_sha256=self.clip.card.raw["sha256"])] if self.clip else []
        specs += [ChannelSpec("visual", self.frames.dim, model=self.frames.card.name,
                              model_sha256=self.frames.card.raw["sha256"]),
                  *(ChannelSpec(c, self.text.dim + (c in PRESENCE_CHANNELS), model=self.text.card.name,
                                model_sha256=self.text.card.raw["sha256"])
                    for c in TEXT_CHANNELS if c != "ocr" or self.ocr)]
        return settings, specs

    def encode_file(self, path: str | Path, digest: str) -> tuple[VideoRecord, dict]:
        """Decode and encode one video: (its record, seconds per stage)."""
        stages = {"decode": 0.0, "frames": 0.0, "speech": 0.0, "ocr": 0.0, "text": 0.0}
        d = self._decode(Path(path))
        stages["decode"] = d["seconds"]
        return self._encode(Path(path), d, digest, stages), stages

    # -- stages ---------------------------------------------------------------------------
    def _decode(self, path: Path) -> dict:
        """Everything that needs the file: probe, frames, audio, subtitles (runs in a thread)."""
        t0 = time.perf_counter()
        info = decode.probe(path)
        if info.video is None:
            raise decode.DecodeError(f"{path}: no video stream")
        duration = float(info.duration) if info.duration > 0 else 0.0
        if duration <= 0:
            raise decode.DecodeError(f"{path}: unknown or zero duration")
        clips = clip_grid(duration, self.clip_seconds)
        centres = clips.mean(axis=1)
        size = self.frames.image_size
        frames = decode.decode_frames(path, decode.Timestamps(list(centres)), size=(size, size), crop=True,
                                      dtype=np.float32, mean=list(self.frames.mean / 255.0),
                                      std=list(self.frames.std / 255.0))
        clip_frames = None
        if self.clip is not None:
            cs = self.clip.image_size
            clip_frames = decode.decode_frames(path, decode.Timestamps(list(centres)), size=(cs, cs), crop=True,
                                               dtype=np.float32, mean=list(self.clip.mean / 255.0),
                                               std=list(self.clip.std / 255.0)).frames
        audio = None
        if self.speech is not None and info.streams_of("audio"):
            try:
                audio = decode.decode_audio(path)
            except decode.DecodeError:
                audio = None  # a broken audio track costs the speech channel, not the video
        subs = [(s.start, s.end, s.text) for s in decode.read_subtitles(path)]
        return {"info": info, "clips": clips, "frames": frames, "clip_frames": clip_frames, "audio": audio, "subs": subs,
                "seconds": time.perf_counter() - t0}

    def _encode(self, path: Path, d: dict, digest: str, st: dict) -> VideoRecord:
        clips, info = d["clips"], d["info"]
        t0 = time.perf_counter()
        feats, probs = self.frames.encode(d["frames"].frames)
        concepts = self.frames.concepts(probs)
        top = [", ".join(f"{n} {p:.2f}" for n, p in row) for row in self.frames.top_classes(probs, top=3)]
        t1 = time.perf_counter()
        segments = self.speech.transcribe(d["audio"]) if d["audio"] is not None and len(d["audio"]) else []
        t2 = time.perf_counter()
        ocr_lines = []
        if self.ocr is not None:
            # decoded here, in chunks, rather than one video ahead: an hour of frames at the
            # reader's size would take gigabytes (and decoding ahead bought nothing measurable on
            # 2 cores, docs/BENCHMARKS.md)
            per_clip = read_video_text(self.ocr, path, info, clips.mean(axis=1), self.ocr_long_side)
            ocr_lines = timed_lines(clips, per_clip)
        t_ocr = time.perf_counter()
        speech_lines = [(s.start, s.end, s.text) for s in segments]
        vectors = {"visual": feats, "concept": concepts}
        if self.clip is not None:
            vectors["clip"] = self.clip.encode_images(d["clip_frames"])
        text_lines = {"speech": speech_lines, "subtitle": d["subs"], "ocr": ocr_lines}
        sources = [name for name in TEXT_SOURCES if name != "ocr" or self.ocr is not None]
        texts = [(src, s, e, t) for src in TEXT_SOURCES for s, e, t in text_lines[src]]
        per_clip = {name: texts_per_clip(clips, text_lines[name]) for name in sources}
        # one encoder pass over every distinct text: the clips' joined lines and each line alone
        # (a line's own vector lets a moment snap to the lines that match a query)
        distinct = sorted({t for ts in per_clip.values() for t in ts if t} | {t for *_, t in texts})
        encoded = dict(zip(distinct, self.text.encode(distinct, "passage"))) if distinct else {}
        for name, per in per_clip.items():
            vec = np.zeros((len(clips), self.text.dim + 1), np.float32)
            for i, t in enumerate(per):
                if t:
                    vec[i, :-1], vec[i, -1] = encoded[t], 1.0
            vectors[name] = vec
        text_vectors = np.array([encoded[t] for *_, t in texts], np.float32).reshape(len(texts), self.text.dim)
        t3 = time.perf_counter()
        st["frames"] += t1 - t0
        st["speech"] += t2 - t1
        st["ocr"] = st.get("ocr", 0.0) + t_ocr - t2
        st["text"] += t3 - t_ocr
        v = info.video
        return VideoRecord(path=str(path), content_hash=digest, duration=float(clips[-1, 1]), clip_times=clips,
                           vectors=vectors, texts=texts, text_vectors=text_vectors, top_concepts=top,
                           fps=v.avg_fps or None, width=v.width, height=v.height,
                           info={"format": info.format, "codec": v.codec})



def check_text_model(name: str) -> str:
    if name not in TEXT_MODELS:
        raise ValueError(f"unknown text model {name!r}; known: {', '.join(TEXT_MODELS)}")
    return name


def check_settings(store: IndexStore, clip_seconds: float, clip_model: str | Path | None,
                   text_model: str | None = None) -> dict:
    """The index's settings, or a clear error when ``clip_seconds``/``clip_model``/``text_model``
    disagree with them."""
    settings = store.settings()
    if settings and text_model and index_text_model(settings) != text_model:
        raise ValueError(f"this index's text channels are in {index_text_model(settings)}'s space, not "
                         f"{text_model}'s; `ivcr index INDEX --rebuild-text --text-model {text_model}` re-embeds them")
    if settings and abs(settings.get("clip_seconds", clip_seconds) - clip_seconds) > 1e-9:
        raise ValueError(f"this index uses {settings['clip_seconds']} s clips, not {clip_seconds} s")
    if settings and clip_model and settings.get("clip_model") != str(Path(clip_model).resolve()):
        raise ValueError("this index was built without that CLIP model; a CLIP channel needs a new index")
    return settings


def ocr_for_index(stores: Sequence[IndexStore], requested: bool) -> tuple[bool, str | None]:
    """Whether the videos this run adds get an ocr channel, and a note saying why not when one
    was asked for. A channel cannot join an index that has rows (every video has a row in every
    channel), so an index built before OCR existed (or with --no-ocr) goes on without it; an
    index that has the channel needs it for every video."""
    has = [("ocr" in st.channels()) for st in stores]
    empty = all(st.row_count() == 0 for st in stores)
    if any(has) and not requested:
        raise ValueError("this index has an ocr channel, so every video needs one; drop --no-ocr "
                         "(or index into a new folder)")
    if requested and not any(has) and not empty:
        return False, ("this index has no ocr channel (built before on-screen text was read, or with "
                       "--no-ocr): new videos are indexed without on-screen text; index into a new "
                       "folder to search it")
    return requested, None


def prepare_store(store: IndexStore, settings: dict, specs: Sequence[ChannelSpec]) -> None:
    """Record the encoder's settings in a new index and make sure its channels exist. An index
    from before lines had vectors learns that its new lines have them (same text model)."""
    have = store.settings()
    if not have:
        store.set_settings(settings)
    elif "line_text_model" not in have and index_text_model(have) == settings.get("line_text_model"):
        store.set_settings({**have, "line_text_model": settings["line_text_model"]})
    for spec in specs:
        store.ensure_channel(spec)


def commit_video(stores: Sequence[IndexStore], rec: VideoRecord) -> bool:
    """Write one encoded video through its shard's crash-safe commit; a changed file at a known
    path replaces its old entry (in whichever shard that is). False when the index already has
    this content (e.g. the same file twice, or a retried task)."""
    target = store_for(stores, rec.content_hash)
    if target.has_hash(rec.content_hash):
        return False
    old = [(st, v) for st in stores for v in [st.find_video_by_path(rec.path)] if v]
    target.add_video(rec)
    for st, v in old:  # the old content's other names (aliases) keep it
        st.remove_path(rec.path, v["id"] if v["path"] == rec.path else None)
    return True


class Ingestor(VideoEncoder):
    """Holds the encoders (loaded once) and writes videos into one index."""

    def __init__(self, index_dir: str | Path, clip_seconds: float = 2.0, speech: bool = True,
                 models_root: Path | None = None, threads: int | None = None, clip_model: str | Path | None = None,
                 shards: int | None = None, ocr: bool = True, text_model: str | None = None):
        from .sharded import open_stores

        # ``shards`` (or a manifest already at index_dir): a sharded index, one writer per shard
        self.stores = open_stores(index_dir, shards)
        self.store = self.stores[0]
        try:
            settings = next((s for s in (check_settings(st, clip_seconds, clip_model, text_model) for st in self.stores)
                             if s), {})
            self.ocr_on, self.ocr_note = ocr_for_index(self.stores, ocr)
        except BaseException:
            self.close()
            raise
        super().__init__(float(settings.get("clip_seconds", clip_seconds)), speech, models_root, threads,
                         clip_model or settings.get("clip_model"), ocr=self.ocr_on,
                         ocr_long_side=int(settings.get("ocr_long_side") or OCR_LONG_SIDE),
                         text_model=index_text_model(settings) if settings else text_model)
        for st in self.stores:
            prepare_store(st, *self.layout())

    def close(self) -> None:
        for st in self.stores:
            st.close()

    # -- driver ---------------------------------------------------------------------------
    def run(self, inputs: Iterable[str | Path], remove: Iterable[str | Path] = (), progress: bool = True,
            on_video: Callable[[str], None] | None = None, overlap: bool = True) -> IngestReport:
        """Index ``inputs``; ``overlap=False`` decodes each video only after the previous one is
        written (the baseline the ingest benchmark compares the overlapped pipeline with)."""
        report = IngestReport(ocr=self.ocr_on)
        if self.ocr_note:
            report.notes.append(self.ocr_note)
        t_start = time.perf_counter()
        for p in remove:
            what = next((w for st in self.stores for w in [st.remove_path(str(Path(p).resolve()))] if w), None)
            if what:
                report.removed.append(str(p) if what == "removed" else f"{p} ({what})")
            else:
                report.failed.append((str(p), "not in the index"))
        todo: list[tuple[Path, str]] = []
        for path in collect_videos(inputs, report.failed):
            if not path.is_file():
                report.failed.append((str(path), "file not found"))
                continue
            digest = content_hash(path)
            shard = store_for(self.stores, digest)
            have = shard.video_by_hash(digest)
            if have is not None:
                if have["path"] == str(path) or str(path) in shard.aliases(have["id"]).get(have["id"], []):
                    report.skipped.append(str(path))
                else:  # the same bytes under another name: recorded as an alias, not encoded again
                    old = [(st, v) for st in self.stores for v in [st.find_video_by_path(str(path))] if v]
                    shard.add_alias(str(path), have["id"])
                    for st, v in old:  # the name held other content before
                        if v["id"] != have["id"] or st is not shard:
                            st.remove_path(str(path), v["id"] if v["path"] == str(path) else None)
                    report.aliased.append((str(path), have["path"]))
                continue
            todo.append((path, digest))
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="video", desc="indexing")
        with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivcr-decode") as pool:
            ahead = None
            for n, (path, digest) in enumerate(todo):
                future = ahead if ahead is not None else pool.submit(self._decode, path)
                # decode the next video while this one is encoded and written
                ahead = pool.submit(self._decode, todo[n + 1][0]) if overlap and n + 1 < len(todo) else None
                try:
                    d = future.result()
                    report.stage_seconds["decode"] += d["seconds"]
                    rec = self._encode(path, d, digest, report.stage_seconds)
                    t0 = time.perf_counter()
                    if commit_video(self.stores, rec):
                        report.stage_seconds["write"] += time.perf_counter() - t0
                        report.add(rec)
                        if on_video:
                            on_video(str(path))
                    else:  # the same content twice in one run
                        report.skipped.append(str(path))
                except Exception as exc:  # one bad video fails itself, never the batch
                    msg = str(exc) if isinstance(exc, (decode.DecodeError, ValueError)) else f"{type(exc).__name__}: {exc}"
                    report.failed.append((str(path), msg))
                if bar:
                    bar.update(1)
        if bar:
            bar.close()
        report.wall_seconds = time.perf_counter() - t_start
        return report


def index_videos(inputs: Iterable[str | Path], index_dir: str | Path, clip_seconds: float = 2.0,
                 remove: Iterable[str | Path] = (), speech: bool = True, progress: bool = False,
                 ocr: bool = True, text_model: str | None = None) -> IngestReport:
    """Index videos (folders, files, manifests) into ``index_dir``; see :class:`Ingestor`."""
    ing = Ingestor(index_dir, clip_seconds=clip_seconds, speech=speech, ocr=ocr, text_model=text_model)
    try:
        return ing.run(inputs, remove=remove, progress=progress)
    finally:
        ing.close()
