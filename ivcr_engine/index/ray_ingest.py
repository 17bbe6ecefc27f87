"""Distributed ingest on Ray: decode + encode run on a pool of Ray actors (each loads the models
once), the encoded videos stream back to this process, and this process alone commits them, through
the crash-safe writer of the shard each video belongs to (store.py). So:

- a killed worker: Ray restarts the actor and retries its video (up to ``retries`` times), else the
  video is reported failed; nothing committed is touched, and a re-run picks up what is missing;
- a killed driver: every committed video stays (SQLite commits after the rows are on disk), the
  videos in flight are lost and a re-run encodes them again (videos already present are skipped by
  content hash, so nothing is duplicated).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

from ..models.registry import index_text_model
from .ingest import (
    IngestReport,
    check_settings,
    commit_video,
    ocr_for_index,
    prepare_search,
    prepare_store,
)
from .inputs import collect_videos, content_hash
from .manifest import open_stores
from .onscreen import OCR_LONG_SIDE
from .partition import store_for
from .video_encoder import VideoEncoder

IN_FLIGHT_PER_WORKER = 2  # one encoding, one queued: a worker never waits for the driver's commit


class EncodeWorker:
    """A Ray actor: the encoders, loaded once, turning a file into a `VideoRecord`."""

    def __init__(self, clip_seconds: float, speech: bool, clip_model: str | None, threads: int, ocr: bool = True,
                 ocr_long_side: int = OCR_LONG_SIDE, text_model: str | None = None):
        self.encoder = VideoEncoder(clip_seconds, speech, threads=threads, clip_model=clip_model, ocr=ocr,
                                    ocr_long_side=ocr_long_side, text_model=text_model)

    def layout(self):
        return self.encoder.layout()

    def pid(self) -> int:
        import os

        return os.getpid()

    def encode(self, path: str, digest: str):
        """(record, stage seconds, None) or (None, None, why it failed): one bad video fails itself."""
        from .. import decode

        try:
            rec, stages = self.encoder.encode_file(path, digest)
            return rec, stages, None
        except Exception as exc:
            msg = str(exc) if isinstance(exc, (decode.DecodeError, ValueError)) else f"{type(exc).__name__}: {exc}"
            return None, None, msg


class RayIngest:
    """``RayIngest(index_dir, address, workers=2, shards=None).run(inputs)``: ingest on a Ray
    cluster into an index folder, or into a sharded index (``shards``, or the manifest already
    at ``index_dir``)."""

    def __init__(self, index_dir: str | Path, address: str = "auto", workers: int = 2, shards: int | None = None,
                 clip_seconds: float = 2.0, speech: bool = True, clip_model: str | Path | None = None,
                 threads_per_worker: int = 1, retries: int = 2, ocr: bool = True, text_model: str | None = None):
        from .ray_cluster import connect

        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self.stores = open_stores(index_dir, shards)
        settings = [check_settings(s, clip_seconds, clip_model, text_model) for s in self.stores]
        have = next((s for s in settings if s), {})
        clip_seconds = float(have.get("clip_seconds", clip_seconds))
        clip_model = clip_model or have.get("clip_model")
        text_model = index_text_model(have) if have else text_model
        self.ocr_on, self.ocr_note = ocr_for_index(self.stores, ocr)
        ray = connect(address)
        self.ray = ray
        actor = ray.remote(EncodeWorker).options(num_cpus=threads_per_worker, max_restarts=retries,
                                                 max_task_retries=retries)
        self.workers = [actor.remote(clip_seconds, speech, str(clip_model) if clip_model else None, threads_per_worker,
                                     self.ocr_on, int(have.get("ocr_long_side") or OCR_LONG_SIDE), text_model)
                        for _ in range(workers)]
        layout = ray.get(self.workers[0].layout.remote())
        for s in self.stores:
            prepare_store(s, *layout)

    def run(self, inputs: Iterable[str | Path], progress: bool = True,
            on_video: Callable[[str], None] | None = None) -> IngestReport:
        ray = self.ray
        report = IngestReport(ocr=self.ocr_on)
        if self.ocr_note:
            report.notes.append(self.ocr_note)
        t_start = time.perf_counter()
        todo: list[tuple[str, str]] = []
        seen: set[str] = set()
        for path in collect_videos(inputs):
            if not path.is_file():
                report.failed.append((str(path), "file not found"))
                continue
            digest = content_hash(path)
            if store_for(self.stores, digest).has_hash(digest) or digest in seen:
                report.skipped.append(str(path))
                continue
            seen.add(digest)
            todo.append((str(path), digest))
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="video", desc=f"indexing on {len(self.workers)} Ray workers")
        queue = list(reversed(todo))
        in_flight: dict = {}  # future -> (worker number, path)
        load = [0] * len(self.workers)

        def submit() -> None:
            while queue:
                w = min(range(len(self.workers)), key=load.__getitem__)
                if load[w] >= IN_FLIGHT_PER_WORKER:
                    return
                path, digest = queue.pop()
                in_flight[self.workers[w].encode.remote(path, digest)] = (w, path)
                load[w] += 1

        submit()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            w, path = in_flight.pop(ready[0])
            load[w] -= 1
            try:
                rec, stages, why = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died more often than Ray retries
                rec, stages, why = None, None, f"worker lost: {type(exc).__name__}"
            if rec is not None:
                t0 = time.perf_counter()
                if commit_video(self.stores, rec):
                    report.stage_seconds["write"] += time.perf_counter() - t0
                    report.add(rec)
                    for k, v in stages.items():
                        report.stage_seconds[k] = report.stage_seconds.get(k, 0.0) + v
                    if on_video:
                        on_video(path)
                else:
                    report.skipped.append(path)
            else:
                report.failed.append((path, why))
            submit()
            if bar:
                wall = time.perf_counter() - t_start
                bar.set_postfix(done=len(report.added), failed=len(report.failed),
                                video_s_per_s=f"{report.seconds_of_video / max(wall, 1e-9):.1f}")
                bar.update(1)
        if bar:
            bar.close()
        prepare_search(self.stores, report)
        report.wall_seconds = time.perf_counter() - t_start
        return report

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []
        for s in self.stores:
            s.close()
