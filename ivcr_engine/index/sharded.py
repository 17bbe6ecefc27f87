"""A sharded index searched as one: ``ShardedIndex`` implements the index protocol (protocol.py)
over the shards of a manifest (manifest.py), in this process or on Ray actors (one per shard,
spread over the cluster's nodes).

Shard ``s`` owns global refs ``local * N + s``: refs stay stable while every shard grows on its
own, and the order of refs inside a shard is the order of its local refs, so merging each shard's
top k by (score desc, ref asc) is exactly the top k of one index with the same ties rule.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..corpus import merge_topk
from ..errors import IndexDamaged, InvalidArgument, MissingFile
from ..models import ClipEncoder
from ..models.registry import index_text_model
from .manifest import MANIFEST, is_sharded, read_manifest
from .protocol import (
    Evidence,
    Moment,
    MomentMatch,
    MomentShortcuts,
    VideoInfo,
    check_ref,
    query_rows,
)
from .query_encoder import QueryEncoder
from .results import Hit
from .single import Index


class Shard(Index):
    """One shard as its owner sees it: in this process, or inside a Ray actor (then every method
    result travels back pickled, so they return plain arrays and dataclasses)."""

    def describe(self) -> dict:
        return {"channels": sorted(self.channels), "settings": self.settings, "num_refs": self.num_refs(),
                "live": len(self), "pid": os.getpid()}



class _Fanout:
    """Calls on every shard, in this process or on their Ray actors (all sent before any is awaited)."""

    def __init__(self, shards: list, ray_module=None):
        self.shards, self.ray = shards, ray_module

    def call(self, s: int, method: str, *args):
        if self.ray is None:
            return getattr(self.shards[s], method)(*args)
        return self.ray.get(getattr(self.shards[s], method).remote(*args))

    def all(self, method: str, args_per_shard: Sequence[tuple | None]) -> list:
        """``method(*args)`` on every shard whose args are not None; None where skipped."""
        if self.ray is None:
            return [None if a is None else getattr(sh, method)(*a) for sh, a in zip(self.shards, args_per_shard)]
        futures = [None if a is None else getattr(sh, method).remote(*a) for sh, a in zip(self.shards, args_per_shard)]
        got = self.ray.get([f for f in futures if f is not None])
        it = iter(got)
        return [None if f is None else next(it) for f in futures]


class ShardedIndex(MomentShortcuts):
    """The index protocol over the shards of a manifest; ``ray_address`` places one Ray actor per
    shard (spread over the nodes; each maps its own shard), otherwise the shards open here.
    Query text is encoded once here; vectors fan out, per-shard top k merge exactly. Moments are
    cut (and their edges snapped to matching lines, ``moment_edges``) by the shard owning the
    video, from the lines it stores, so they equal a single index's."""

    def __init__(self, root: str | Path, ray_address: str | None = None, text_encoder=None,
                 models_root: Path | None = None, moment_edges: str = "lines", prefault: bool = False,
                 query_encoder: QueryEncoder | None = None):
        self.root = Path(root)
        self.prefault = bool(prefault)
        paths = read_manifest(self.root)
        missing = [str(p) for p in paths if not (p / "meta.sqlite").is_file()]
        if missing:
            raise MissingFile(f"shards listed in {self.root / MANIFEST} are missing: {', '.join(missing)}")
        self.n = len(paths)
        self.actors = None
        if ray_address is None:
            self._fan = _Fanout([Shard(p, text_encoder=_NO_TEXT, moment_edges=moment_edges, prefault=prefault)
                                 for p in paths])
        else:
            from .ray_cluster import connect

            ray = connect(ray_address)
            cls = ray.remote(Shard)
            # no CPU reserved: a shard actor idles between turns; SPREAD puts each on its own node
            self.actors = [cls.options(num_cpus=0, scheduling_strategy="SPREAD").remote(
                str(p.resolve()), text_encoder=_NO_TEXT, moment_edges=moment_edges, prefault=prefault) for p in paths]
            self._fan = _Fanout(self.actors, ray)
        self._describe()
        self.settings = self._info[0]["settings"]
        self.clip_seconds = float(self.settings.get("clip_seconds", 2.0))
        self.channels = self._info[0]["channels"]
        for s, info in enumerate(self._info):
            if (info["channels"] != self.channels or info["settings"].get("clip_seconds") != self.settings.get("clip_seconds")
                    or index_text_model(info["settings"]) != index_text_model(self.settings)):
                raise IndexDamaged(f"shard {s} has channels {info['channels']} / settings {info['settings']}, "
                                 f"unlike shard 0 ({self.channels} / {self.settings})")
        self.query_encoder = query_encoder or QueryEncoder(models_root, text_encoder=text_encoder)
        clip_model = self.settings.get("clip_model")
        self.clip = ClipEncoder(clip_model) if clip_model and "clip" in self.channels else None
        self.queries = self.query_encoder.bind(self.settings, self.channels, self.clip)

    @classmethod
    def open(cls, root: str | Path, **kw) -> "ShardedIndex":
        return cls(root, **kw)

    def _describe(self) -> None:
        self._info = self._fan.all("describe", [()] * self.n)
        self._num_refs = [int(i["num_refs"]) for i in self._info]

    @property
    def text_encoder(self):
        return self.queries.text_encoder

    # -- refs -----------------------------------------------------------------------------
    def _split(self, ref: int) -> tuple[int, int]:
        return ref % self.n, ref // self.n

    def _local(self, refs: Sequence[int] | None) -> list[list[int] | None]:
        """Global refs -> per-shard local refs (None stays None: no restriction)."""
        if refs is None:
            return [None] * self.n
        out: list[list[int]] = [[] for _ in range(self.n)]
        for r in refs:
            s, loc = self._split(check_ref(self, r))
            if loc < self._num_refs[s]:
                out[s].append(loc)
        return out

    def num_refs(self) -> int:
        last = [(n - 1) * self.n + s for s, n in enumerate(self._num_refs) if n > 0]
        return max(last) + 1 if last else 0

    def __len__(self) -> int:
        return sum(int(i["live"]) for i in self._info)

    def video(self, ref: int) -> VideoInfo:
        s, loc = self._split(check_ref(self, ref))
        if loc >= self._num_refs[s]:  # a ref its shard has not reached yet: no video there
            return VideoInfo(int(ref), "", "", 0.0, True)
        v = self._fan.call(s, "video", loc)
        return VideoInfo(int(ref), f"s{s}:{v.video_id}", v.path, v.duration, v.removed)

    # -- the index protocol -----------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.queries.rows(texts)

    def encode_image(self, picture) -> dict[str, np.ndarray]:
        return self.queries.image(picture)

    def rank_videos(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                    allow: Sequence[int] | None = None, deny: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        if int(k) < 1:
            raise InvalidArgument("k must be >= 1")
        queries, k = query_rows(queries), int(k)
        allow_s, deny_s = self._local(allow), self._local(deny)
        args = [None if (a is not None and not a) else (queries, k, weights, a, d) for a, d in zip(allow_s, deny_s)]
        got = self._fan.all("rank_videos", args)
        b = next(iter(queries.values())).shape[0]
        refs = [np.full((b, 0), -1, np.int64)]
        scores = [np.full((b, 0), -np.inf, np.float32)]
        for s, res in enumerate(got):
            if res is not None:
                loc, sc = res
                refs.append(np.where(loc >= 0, loc * self.n + s, -1))
                scores.append(sc)
        merged_scores, merged_refs = merge_topk(np.concatenate(refs, axis=1), np.concatenate(scores, axis=1), k)
        return merged_refs, merged_scores

    def moments(self, queries: Mapping[str, np.ndarray], videos: Sequence[int], weights: Mapping[str, float] | None = None,
                window: tuple[float, float] | None = None, top: int = 1, evidence: bool = True
                ) -> list[list[MomentMatch]]:
        """One call per shard that owns some of ``videos``, each over its own videos (all sent
        before any is awaited)."""
        split = [self._split(check_ref(self, v)) for v in videos]
        q = query_rows(queries)
        args: list = [None] * self.n
        for s in sorted({s for s, _ in split}):
            args[s] = (q, [loc for t, loc in split if t == s], weights, window, top, evidence)
        got = self._fan.all("moments", args)
        out: list[list[MomentMatch]] = []
        taken = [0] * self.n
        for i, (s, _) in enumerate(split):
            found = got[s][taken[s]]
            taken[s] += 1
            out.append([MomentMatch(Moment(int(videos[i]), m.moment.start, m.moment.end, m.moment.score), m.evidence)
                        for m in found])
        return out

    def evidence(self, video: int, start: float, end: float, queries: Mapping[str, np.ndarray] | None = None,
                 weights: Mapping[str, float] | None = None) -> Evidence:
        s, loc = self._split(check_ref(self, video))
        return self._fan.call(s, "evidence", loc, start, end, None if queries is None else query_rows(queries), weights)

    def moment_vector(self, video: int, start: float, end: float, channel: str = "visual") -> np.ndarray:
        s, loc = self._split(check_ref(self, video))
        return self._fan.call(s, "moment_vector", loc, start, end, channel)

    def locked_bytes(self) -> tuple[int, int]:
        """Index.locked_bytes summed over the shards (each on its own node's memory with Ray)."""
        got = self._fan.all("locked_bytes", [()] * self.n)
        return sum(g[0] for g in got), sum(g[1] for g in got)

    def refresh(self) -> bool:
        changed = any(self._fan.all("refresh", [()] * self.n))
        self._describe()
        settings = self._info[0]["settings"]
        if index_text_model(settings) != index_text_model(self.settings):  # `ivcr index --rebuild-text`
            self.settings = settings
            self.queries = self.query_encoder.bind(settings, self.channels, self.clip)
        return changed

    def search(self, query: str | Mapping[str, np.ndarray], k: int = 10, weights: Mapping[str, float] | None = None,
               allow: Sequence[int] | None = None, deny: Sequence[int] | None = None,
               moments_per_video: int = 1, timings: dict | None = None) -> list[Hit]:
        """`Index.search` over the shards: the merged top ``k`` videos, each shard cutting the
        moments of its own videos."""
        if int(k) < 1:
            raise InvalidArgument("k must be >= 1")
        t0 = time.perf_counter()
        queries = self.encode_queries([query]) if isinstance(query, str) else query_rows(query)
        t1 = time.perf_counter()
        refs, scores = self.rank_videos(queries, k, weights, allow, deny)
        t2 = time.perf_counter()
        order = [(int(r), float(sc)) for r, sc in zip(refs[0], scores[0]) if r >= 0]
        per_shard: list = [None] * self.n
        for r, sc in order:
            s, loc = self._split(r)
            if per_shard[s] is None:
                per_shard[s] = (queries, weights, [], [], moments_per_video)
            per_shard[s][2].append(loc)
            per_shard[s][3].append(sc)
        got = self._fan.all("hits", per_shard)
        by_ref: dict[int, list[Hit]] = {}
        for s, hits in enumerate(got):
            for h in hits or []:
                g = h.video_index * self.n + s
                h.video_index, h.video_id = g, f"s{s}:{h.video_id}"
                by_ref.setdefault(g, []).append(h)
        out = [h for r, _ in order for h in by_ref.get(r, [])]
        for i, h in enumerate(out, 1):
            h.rank = i
        if timings is not None:
            for key, sec in (("encode", t1 - t0), ("search", t2 - t1), ("span", time.perf_counter() - t2)):
                timings[key] = timings.get(key, 0.0) + sec
        return out

    def close(self) -> None:
        if self.actors is not None:
            import ray

            for a in self.actors:
                ray.kill(a)
            self.actors = None
        else:
            for sh in self._fan.shards:
                sh.close()


class _NoTextEncoder:
    """A shard never encodes text (the ShardedIndex does, once per query): opening one loads no model."""

    def encode(self, texts):
        raise RuntimeError("a shard does not encode queries; the ShardedIndex encodes them once")


_NO_TEXT = _NoTextEncoder()


def open_index(root: str | Path, ray_address: str | None = None, **kw):
    """An index folder (`Index`) or a sharded index's folder (`ShardedIndex`, optionally on Ray)."""
    if is_sharded(root):
        return ShardedIndex(root, ray_address=ray_address, **kw)
    if ray_address is not None:
        raise InvalidArgument(f"{root} is not a sharded index (no {MANIFEST}); Ray serves sharded indexes "
                         "(split it with `ivcr shard split`)")
    return Index.open(root, **kw)
