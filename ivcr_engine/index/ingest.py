"""Ingest: from videos on disk to an index folder (or a sharded one): each new file is encoded
(video_encoder.py, one video decoding ahead in a background thread while the current one is
encoded and written) and committed in one transaction; a file whose content is already stored
becomes an alias of it. The settings check keeps every video of an index on one clip grid, one
text model and one CLIP model.
"""
from __future__ import annotations

import concurrent.futures as cf
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import decode
from ..models.registry import index_text_model
from .inputs import collect_videos, content_hash
from .onscreen import OCR_LONG_SIDE
from .partition import store_for
from . import ranking
from .single import Index
from .store import ChannelSpec, IndexStore, VideoRecord
from .video_encoder import VideoEncoder


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


def prepare_search(stores: Sequence[IndexStore], report: IngestReport, models_root: Path | None = None) -> None:
    """After a run, every shard's lexical table in one segment (store_lexical.merge_lexical) and
    every large shard's first-stage copies (Index.prepare_search), so that the first search after
    the commit, and a host on libivcr that has no Python to build them, find them ready; a copy
    already there (or grown from the last one) costs little. The videos are committed by then:
    what cannot be prepared is a note, and searches still run (more slowly) without it."""
    t0 = time.perf_counter()
    merged = False
    for st in stores:
        try:
            merged = st.merge_lexical() or merged
        except sqlite3.Error as exc:  # (e.g. another writer holds the lock: the next run merges)
            report.notes.append(f"the lexical table of {st.root} was not merged ({exc})")
    if merged:
        report.stage_seconds["lexical merge"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    built = False
    for st in stores:
        if st.row_count() < ranking.TWO_STAGE_MIN_ROWS:
            continue
        try:
            index = Index(st.root, models_root=models_root)
            try:
                built = bool(index.prepare_search()) or built
            finally:
                index.close()
        except Exception as exc:  # noqa: BLE001 (any cause: what was committed stays committed)
            report.notes.append(f"the first-stage copies of {st.root} were not prepared ({type(exc).__name__}: {exc}); "
                                "a search builds them on first use, and a host on libivcr alone scans every row until then")
    if built:
        report.stage_seconds["search copies"] = time.perf_counter() - t0


class Ingestor(VideoEncoder):
    """Holds the encoders (loaded once) and writes videos into one index."""

    def __init__(self, index_dir: str | Path, clip_seconds: float = 2.0, speech: bool = True,
                 models_root: Path | None = None, threads: int | None = None, clip_model: str | Path | None = None,
                 shards: int | None = None, ocr: bool = True, text_model: str | None = None):
        from .manifest import open_stores

        # ``shards`` (or a manifest already at index_dir): a sharded index, one writer per shard
        self.models_root = models_root
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
        prepare_search(self.stores, report, self.models_root)
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
