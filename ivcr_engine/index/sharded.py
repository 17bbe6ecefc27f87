"""A sharded index: N ordinary index folders plus a small manifest, searched as one.

    ROOT/shards.json     {"format": "ivcr-sharded-index", "version": 1, "shards": ["shard-00", ...]}
    ROOT/shard-00/ ...   an ordinary index folder (store.py) per shard

Videos are partitioned by a stable hash of their content hash, so a video always lands in the same
shard and a re-run finds it there. Shard ``s`` owns global refs ``local * N + s``: refs stay stable
while every shard grows on its own, and the order of refs inside a shard is the order of its local
refs, so merging each shard's top k by (score desc, ref asc) is exactly the top k of one index with
the same ties rule. `ShardedIndex` implements the index protocol (protocol.py) over shards that live
in this process or on Ray actors (one per shard, spread over the cluster's nodes).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..models import ClipEncoder, TextEncoder
from ..models.registry import index_text_model, model_dir
from .partition import shard_of
from .protocol import Evidence, Moment, VideoInfo, check_ref, query_rows
from .searcher import DEFAULT_WEIGHTS, Hit, Index, encode_text_queries, encoder_fits, query_text_encoder
from .store import ChannelSpec, IndexStore, VideoRecord

MANIFEST = "shards.json"
FORMAT = "ivcr-sharded-index"


def is_sharded(root: str | Path) -> bool:
    return (Path(root) / MANIFEST).is_file()


def read_manifest(root: str | Path) -> list[Path]:
    """The shard folders of a sharded index, or a clear error."""
    path = Path(root) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no sharded index at {root} ({MANIFEST} missing)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != 1 or not m.get("shards"):
        raise ValueError(f"{path} is not a version-1 {FORMAT} manifest")
    return [Path(root) / s for s in m["shards"]]


def create_manifest(root: str | Path, n: int) -> list[Path]:
    """Start a sharded index of ``n`` shards at ``root`` (or reopen one with the same ``n``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of shards must be an int >= 1, got {n!r}")
    root = Path(root)
    if is_sharded(root):
        have = read_manifest(root)
        if len(have) != n:
            raise ValueError(f"{root} already has {len(have)} shards, not {n}; videos are placed by shard count")
        return have
    if (root / "meta.sqlite").exists():
        raise ValueError(f"{root} is an unsharded index; split it with `ivcr shard split`")
    root.mkdir(parents=True, exist_ok=True)
    names = [f"shard-{i:02d}" for i in range(n)]
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "version": 1, "shards": names,
                               "partition": "blake2b(content_hash) mod N"}, indent=1))
    tmp.replace(root / MANIFEST)  # the manifest appears whole or not at all
    return [root / s for s in names]


def open_stores(root: str | Path, shards: int | None = None) -> list[IndexStore]:
    """The writers of an index folder: one store, or one per shard when ``shards`` is given or a
    manifest is already there (created on first use)."""
    root = Path(root)
    if shards is not None or is_sharded(root):
        paths = create_manifest(root, shards) if shards is not None else read_manifest(root)
    else:
        paths = [root]
    return [IndexStore(p, create=True) for p in paths]


def split_index(src: str | Path, dst: str | Path, n: int, batch: int = 2000, progress: bool = False) -> list[int]:
    """Copy the live videos of an unsharded index into a new ``n``-shard index at ``dst`` (rows,
    clip times, texts, concepts, settings). Resumable: videos a shard already has are skipped.
    Returns the number of videos per shard."""
    src_store = IndexStore(src)
    if Path(dst).resolve() == Path(src).resolve():
        raise ValueError("split into a new folder, not onto the index itself")
    paths = create_manifest(dst, n)
    chans = src_store.channels()
    vectors = {c: src_store.vectors(c) for c in chans}
    times = src_store.clip_times()
    outs = [IndexStore(p, create=True) for p in paths]
    counts = [0] * n
    try:
        for out in outs:
            if not out.settings():
                out.set_settings(src_store.settings())
            for spec in chans.values():
                out.ensure_channel(ChannelSpec(spec.name, spec.dim, spec.dtype, spec.model, spec.model_sha256))
        pending: list[list[VideoRecord]] = [[] for _ in range(n)]
        videos = src_store.videos()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(videos), unit="video", desc="splitting")
        for i, v in enumerate(videos):
            s = shard_of(v["content_hash"], n)
            counts[s] += 1
            if not outs[s].has_hash(v["content_hash"]):
                a, b = v["first_row"], v["first_row"] + v["n_clips"]
                rows = range(a, b)
                lines, line_vecs = src_store.text_lines(v["id"])
                pending[s].append(VideoRecord(
                    v["path"], v["content_hash"], v["duration"], np.asarray(times[a:b]),
                    {c: np.asarray(vectors[c][a:b]) for c in chans}, texts=lines,
                    text_vectors=line_vectors(line_vecs),
                    top_concepts=src_store.concepts(rows), fps=v["fps"], width=v["width"], height=v["height"],
                    info=json.loads(v["info"]) if v["info"] else {}))
            if len(pending[s]) >= batch or (i == len(videos) - 1):
                for t in range(n) if i == len(videos) - 1 else (s,):
                    if pending[t]:
                        outs[t].add_videos(pending[t])
                        pending[t] = []
            if bar:
                bar.update(1)
        if bar:
            bar.close()
    finally:
        for out in outs:
            out.close()
        src_store.close()
    return counts


def line_vectors(vecs: list) -> np.ndarray | None:
    """The stored vectors of a video's lines as one array, or None when any line lacks one (lines
    from an index written before lines had vectors: they stay without, as in the source)."""
    if not vecs or any(v is None for v in vecs):
        return None
    return np.stack(vecs)


class Shard(Index):
    """One shard as its owner sees it: in this process, or inside a Ray actor (then every method
    result travels back pickled, so they return plain arrays and dataclasses)."""

    def describe(self) -> dict:
        return {"channels": sorted(self.channels), "settings": self.settings, "num_refs": self.num_refs(),
                "live": len(self), "pid": os.getpid()}

    def hits(self, queries, weights, refs, scores, per_video: int) -> list[Hit]:
        return self._moments(query_rows(queries), weights, np.asarray(refs, np.int64), np.asarray(scores), per_video)


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


class ShardedIndex:
    """The index protocol over the shards of a manifest; ``ray_address`` places one Ray actor per
    shard (spread over the nodes; each maps its own shard), otherwise the shards open here.
    Query text is encoded once here; vectors fan out, per-shard top k merge exactly. Moments are
    cut (and their edges snapped to matching lines, ``moment_edges``) by the shard owning the
    video, from the lines it stores, so they equal a single index's."""

    def __init__(self, root: str | Path, ray_address: str | None = None, text_encoder: TextEncoder | None = None,
                 models_root: Path | None = None, moment_edges: str = "lines", prefault: bool = False):
        self.root = Path(root)
        self.prefault = bool(prefault)
        paths = read_manifest(self.root)
        missing = [str(p) for p in paths if not (p / "meta.sqlite").is_file()]
        if missing:
            raise FileNotFoundError(f"shards listed in {self.root / MANIFEST} are missing: {', '.join(missing)}")
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
                raise ValueError(f"shard {s} has channels {info['channels']} / settings {info['settings']}, "
                                 f"unlike shard 0 ({self.channels} / {self.settings})")
        self._models_root = models_root or model_dir()
        self._text = text_encoder if encoder_fits(text_encoder, self.settings, self._models_root) else None
        clip_model = self.settings.get("clip_model")
        self.clip = ClipEncoder(clip_model) if clip_model and "clip" in self.channels else None

    @classmethod
    def open(cls, root: str | Path, **kw) -> "ShardedIndex":
        return cls(root, **kw)

    def _describe(self) -> None:
        self._info = self._fan.all("describe", [()] * self.n)
        self._num_refs = [int(i["num_refs"]) for i in self._info]

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text is None:
            self._text = query_text_encoder(self.settings, self._models_root)
        return self._text

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
        return encode_text_queries(texts, self.text_encoder, self.channels, self.clip)

    def rank_videos(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                    allow: Sequence[int] | None = None, deny: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        if int(k) < 1:
            raise ValueError("k must be >= 1")
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
        return merge_topk(np.concatenate(refs, axis=1), np.concatenate(scores, axis=1), k)

    def best_moments(self, queries: Mapping[str, np.ndarray], video: int, weights: Mapping[str, float] | None = None,
                     window: tuple[float, float] | None = None, top: int = 1) -> list[Moment]:
        s, loc = self._split(check_ref(self, video))
        found = self._fan.call(s, "best_moments", query_rows(queries), loc, weights, window, top)
        return [Moment(int(video), m.start, m.end, m.score) for m in found]

    def best_moments_many(self, queries: Mapping[str, np.ndarray], videos: Sequence[int],
                          weights: Mapping[str, float] | None = None, window: tuple[float, float] | None = None,
                          top: int = 1) -> list[list[Moment]]:
        """One call per shard that owns some of ``videos``, each over its own videos."""
        split = [self._split(check_ref(self, v)) for v in videos]
        q = query_rows(queries)
        out: list[list[Moment]] = [[] for _ in split]
        for s in sorted({s for s, _ in split}):
            mine = [i for i, (t, _) in enumerate(split) if t == s]
            found = self._fan.call(s, "best_moments_many", q, [split[i][1] for i in mine], weights, window, top)
            for i, moments in zip(mine, found):
                out[i] = [Moment(int(videos[i]), m.start, m.end, m.score) for m in moments]
        return out

    def evidence(self, video: int, start: float, end: float, queries: Mapping[str, np.ndarray] | None = None,
                 weights: Mapping[str, float] | None = None) -> Evidence:
        s, loc = self._split(check_ref(self, video))
        return self._fan.call(s, "evidence", loc, start, end, None if queries is None else query_rows(queries), weights)

    def moment_vector(self, video: int, start: float, end: float, channel: str = "visual") -> np.ndarray:
        s, loc = self._split(check_ref(self, video))
        return self._fan.call(s, "moment_vector", loc, start, end, channel)

    def refresh(self) -> bool:
        changed = any(self._fan.all("refresh", [()] * self.n))
        self._describe()
        settings = self._info[0]["settings"]
        if index_text_model(settings) != index_text_model(self.settings):  # `ivcr index --rebuild-text`
            self.settings, self._text = settings, None
        return changed

    def search(self, query: str | Mapping[str, np.ndarray], k: int = 10, weights: Mapping[str, float] | None = None,
               allow: Sequence[int] | None = None, deny: Sequence[int] | None = None,
               moments_per_video: int = 1, timings: dict | None = None) -> list[Hit]:
        """`Index.search` over the shards: the merged top ``k`` videos, each shard cutting the
        moments of its own videos."""
        if int(k) < 1:
            raise ValueError("k must be >= 1")
        t0 = time.perf_counter()
        queries = self.encode_queries([query]) if isinstance(query, str) else query_rows(query)
        t1 = time.perf_counter()
        w = dict(DEFAULT_WEIGHTS if weights is None else weights)
        w = {c: float(w.get(c, 0.0)) for c in queries}
        refs, scores = self.rank_videos(queries, k, w, allow, deny)
        t2 = time.perf_counter()
        order = [(int(r), float(sc)) for r, sc in zip(refs[0], scores[0]) if r >= 0]
        per_shard: list = [None] * self.n
        for r, sc in order:
            s, loc = self._split(r)
            if per_shard[s] is None:
                per_shard[s] = (queries, w, [], [], moments_per_video)
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


def merge_topk(refs: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best ``k`` of the candidates by (score desc, ref asc), padded -1 / -inf."""
    b = refs.shape[0]
    out_i = np.full((b, k), -1, np.int64)
    out_s = np.full((b, k), -np.inf, np.float32)
    for r in range(b):
        ok = refs[r] >= 0
        ids, sc = refs[r][ok], scores[r][ok]
        order = np.lexsort((ids, -sc))[:k]
        out_i[r, :len(order)], out_s[r, :len(order)] = ids[order], sc[order]
    return out_i, out_s


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
        raise ValueError(f"{root} is not a sharded index (no {MANIFEST}); Ray serves sharded indexes "
                         "(split it with `ivcr shard split`)")
    return Index.open(root, **kw)
