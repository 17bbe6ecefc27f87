"""The on-disk form of a sharded index: N ordinary index folders plus a small manifest.

    ROOT/shards.json     {"format": "ivcr-sharded-index", "version": 1, "shards": ["shard-00", ...]}
    ROOT/shard-00/ ...   an ordinary index folder (store.py) per shard

Videos are partitioned by a stable hash of their content hash (partition.py), so a video always
lands in the same shard and a re-run finds it there. ``split_index`` turns an unsharded index into
a sharded one; sharded.py searches one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument, MissingFile
from .partition import shard_of
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
        raise MissingFile(f"no sharded index at {root} ({MANIFEST} missing)") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != 1 or not m.get("shards"):
        raise InvalidArgument(f"{path} is not a version-1 {FORMAT} manifest")
    return [Path(root) / s for s in m["shards"]]


def create_manifest(root: str | Path, n: int) -> list[Path]:
    """Start a sharded index of ``n`` shards at ``root`` (or reopen one with the same ``n``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"the number of shards must be an int >= 1, got {n!r}")
    root = Path(root)
    if is_sharded(root):
        have = read_manifest(root)
        if len(have) != n:
            raise InvalidArgument(f"{root} already has {len(have)} shards, not {n}; videos are placed by shard count")
        return have
    if (root / "meta.sqlite").exists():
        raise InvalidArgument(f"{root} is an unsharded index; split it with `ivcr shard split`")
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
        raise InvalidArgument("split into a new folder, not onto the index itself")
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
                lines, line_vecs, _ = src_store.text_lines(v["id"])
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
