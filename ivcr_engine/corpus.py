"""Fused similarity top-k over a corpus of clip vectors (the native core in csrc/search).

A :class:`Corpus` holds one or more *channels* (matrices of L2-normalised clip vectors that share
one clip grid, e.g. visual, speech, subtitle) and the *offsets* that say which rows belong to
which video (video ``v`` owns rows ``offsets[v]:offsets[v+1]``). Searches score
``sum_c w_c * <q_c, e_c>`` in one pass over the rows and keep only the best results, so no
``B x N`` score matrix is ever materialised.

Results follow one convention everywhere: ``(scores, ids)`` of shape ``(B, min(k, candidates))``,
best first, ties broken by the lower id, padded with id ``-1`` and score ``-inf`` when a filter
leaves fewer candidates than that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from . import _core
from .checks import as_int, as_int_array
from .errors import InvalidArgument, WrongType

ChannelData = Union[np.ndarray, tuple]  # float32/float16 array, or (int8 or packed int4 array, float32 scales)
Queries = Union[np.ndarray, Mapping[str, np.ndarray]]

AGGREGATIONS = ("max", "mean", "logsumexp")


@dataclass(frozen=True)
class SearchResult:
    """Top-k results: ``scores`` float32 and ``ids`` int64, both ``(B, k_out)``."""

    scores: np.ndarray
    ids: np.ndarray

    def __iter__(self):  # allows ``scores, ids = corpus.topk_clips(...)``
        return iter((self.scores, self.ids))


def quantize_int8(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantisation: ``vectors[r] ~= scales[r] * q[r]``.

    A quarter of float32's bytes; the search is memory-bound at small batches, so this is the
    fastest channel format. Recall against float32 is measured in the benchmarks.
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise InvalidArgument(f"expected a 2-D array of vectors, got shape {v.shape}")
    peak = np.abs(v).max(axis=1) if v.shape[1] else np.zeros(len(v), np.float32)
    scales = (peak / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    q = np.clip(np.rint(v / safe[:, None]), -127, 127).astype(np.int8)
    return q, scales


# int4 rows are groups of INT4_GROUP dims in INT4_GROUP / 2 bytes: byte j of a group holds dim j in
# its low nibble and dim j + INT4_GROUP / 2 in its high nibble, each stored as value + 8, so one
# 16-byte load unpacks into two runs of 16 consecutive dims with a mask and a shift
# (csrc/search/cpu/dot_kernels.h).
INT4_GROUP = 32


def quantize_int4(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int4 quantisation: ``vectors[r] ~= scales[r] * unpack_int4(packed)[r]``,
    values in -7..7, packed two per byte as ``(N, D / 2)`` uint8 (D a multiple of 32).

    An eighth of float32's bytes. Four bits keep a ranking only for rows whose dims carry similar
    spread (first_stage.py whitens them first); the index checks its recall before using it.
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise InvalidArgument(f"expected a 2-D array of vectors, got shape {v.shape}")
    if v.shape[1] % INT4_GROUP:
        raise InvalidArgument(f"int4 rows need a multiple of {INT4_GROUP} dims, got {v.shape[1]}")
    peak = np.abs(v).max(axis=1) if v.shape[1] else np.zeros(len(v), np.float32)
    scales = (peak / 7.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    q = np.clip(np.rint(v / safe[:, None]), -7, 7).astype(np.int8).reshape(len(v), -1, 2, INT4_GROUP // 2)
    u = (q + 8).astype(np.uint8)
    packed = u[:, :, 0] | (u[:, :, 1] << 4)
    return np.ascontiguousarray(packed.reshape(len(v), -1)), scales


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """The int8 values (-8..7) of packed int4 rows (``quantize_int4``'s layout): ``(N, 2 * bytes)``."""
    p = np.asarray(packed, np.uint8)
    p = p.reshape(len(p), -1, INT4_GROUP // 2)
    lo = (p & 15).astype(np.int8) - 8
    hi = (p >> 4).astype(np.int8) - 8
    return np.stack([lo, hi], axis=2).reshape(len(p), -1)


def video_bitset(video_ids: Iterable[int] | np.ndarray, n_videos: int) -> np.ndarray:
    """A uint64 bitset over ``n_videos`` from video ids or a boolean mask (for filters)."""
    if isinstance(video_ids, np.ndarray) and video_ids.dtype == bool:
        ids = video_ids
    else:  # ids must be integers: deny=[1.5] is an error, not video 1
        items = video_ids if isinstance(video_ids, np.ndarray) else list(video_ids)
        ids = as_int_array(items, "filter video ids") if len(items) else np.zeros(0, np.int64)
    mask = np.zeros(n_videos, dtype=bool)
    if ids.dtype == bool:
        if ids.shape != (n_videos,):
            raise InvalidArgument(f"a boolean filter mask needs shape ({n_videos},), got {ids.shape}")
        mask = ids
    elif ids.size:
        if ids.min() < 0 or ids.max() >= n_videos:
            raise InvalidArgument(f"filter video ids must be in [0, {n_videos}), got {ids.min()}..{ids.max()}")
        mask[ids] = True
    padded = np.zeros(-(-max(n_videos, 1) // 64) * 64, dtype=bool)
    padded[:n_videos] = mask
    return np.packbits(padded, bitorder="little").view(np.uint64)


class Corpus:
    """Searchable clip vectors, one or more channels, grouped into videos.

    ``channels`` maps a channel name to its vectors: a ``(N, D)`` float32 or float16 array, or an
    ``(int8 array, float32 scales)`` pair from :func:`quantize_int8`, or a ``(packed uint8 array,
    float32 scales)`` pair from :func:`quantize_int4` (CPU only). Arrays are referenced, not
    copied (a memory-mapped file is searched in place), so they must stay unchanged. ``offsets``
    defaults to one video per row.

    ``refine`` maps an int8 channel to its exact (float16/float32) vectors: searches then scan the
    int8 data for ``refine_factor * k`` candidates and re-rank those exactly, which recovers the
    float ranking at almost the int8 scan cost (only the candidates' rows of the exact vectors are
    read, so they may stay memory-mapped on disk).

    ``device="cuda"`` copies the channels to GPU memory and searches there (same results and
    conventions); it needs a build with CUDA kernels and a CUDA device.
    """

    def __init__(self, channels: Mapping[str, ChannelData] | np.ndarray, offsets: Sequence[int] | np.ndarray | None = None,
                 refine: Mapping[str, np.ndarray] | None = None, refine_factor: int = 4, device: str = "cpu"):
        if isinstance(channels, np.ndarray) or isinstance(channels, tuple):
            channels = {"default": channels}
        if not channels:
            raise InvalidArgument("a corpus needs at least one channel")
        self.channel_names: list[str] = list(channels)
        native = []
        for name in self.channel_names:
            data = channels[name]
            if isinstance(data, tuple):
                values, scales = data
                native.append((np.ascontiguousarray(values), np.ascontiguousarray(scales, dtype=np.float32)))
            else:
                arr = np.asarray(data)
                if arr.dtype in (np.int8, np.uint8):
                    raise InvalidArgument(f"channel {name!r}: int8 and int4 vectors need scales, pass (values, scales)")
                native.append((np.ascontiguousarray(arr), None))
        n_rows = native[0][0].shape[0] if native[0][0].ndim == 2 else 0
        if offsets is None:
            offsets = np.arange(n_rows + 1, dtype=np.int64)
        self.offsets = as_int_array(offsets, "offsets")
        self.device = device
        self._native = _native_class(device)(native, self.offsets)
        self._exact = self._exact_vectors(native, refine or {})
        if refine_factor < 1:
            raise InvalidArgument("refine_factor must be >= 1")
        self.refine_factor = int(refine_factor)
        self._refined = bool(refine)

    def _exact_vectors(self, native: list, refine: Mapping[str, np.ndarray]) -> list:
        """Per channel, the vectors used when re-ranking: the refine array, or the channel itself
        (int8 and int4 dequantised lazily per candidate row)."""
        unknown = set(refine) - set(self.channel_names)
        if unknown:
            raise InvalidArgument(f"refine names unknown channels {sorted(unknown)}")
        out = []
        for name, (values, scales) in zip(self.channel_names, native):
            if name in refine:
                exact = np.asarray(refine[name])
                shape = (values.shape[0], values.shape[1] * (2 if values.dtype == np.uint8 else 1))
                if exact.shape != shape or exact.dtype not in (np.float16, np.float32):
                    raise InvalidArgument(f"refine[{name!r}] must be float16/float32 of shape {shape}")
                out.append((exact, None))
            else:
                out.append((values, scales))
        return out

    @property
    def rows(self) -> int:
        return self._native.rows

    @property
    def videos(self) -> int:
        return self._native.videos

    @property
    def dims(self) -> dict[str, int]:
        return dict(zip(self.channel_names, self._native.dims))

    def video_of(self, clip_ids: np.ndarray) -> np.ndarray:
        """Video index of each clip id (``-1`` stays ``-1``)."""
        clip_ids = np.asarray(clip_ids)
        v = np.searchsorted(self.offsets, clip_ids, side="right") - 1
        return np.where(clip_ids < 0, -1, v)

    def topk_clips(self, queries: Queries, k: int, weights: Mapping[str, float] | None = None,
                   allow: Iterable[int] | np.ndarray | None = None,
                   deny: Iterable[int] | np.ndarray | None = None) -> SearchResult:
        """Best ``k`` clips per query. ``allow``/``deny`` restrict by *video* id (or bool mask)."""
        k = as_int(k, "k")
        qs, ws = self._queries(queries, weights)
        bits, mode = self._filter(allow, deny)
        if not self._refined:
            return SearchResult(*self._native.topk_clips(qs, ws, k, bits, mode))
        _, cand = self._native.topk_clips(qs, ws, self._candidates(k), bits, mode)
        k_out = min(int(k), self.rows)
        out_s = np.full((len(cand), k_out), -np.inf, np.float32)
        out_i = np.full((len(cand), k_out), -1, np.int64)
        for b, ids in enumerate(cand):
            ids = ids[ids >= 0]
            s = self._exact_scores(qs, ws, b, ids)
            out_s[b], out_i[b] = (a[0] for a in merge_topk(ids[None], s[None], k_out))
        return SearchResult(out_s, out_i)

    def topk_videos(self, queries: Queries, k: int, agg: str = "max", temperature: float = 0.1,
                    weights: Mapping[str, float] | None = None,
                    allow: Iterable[int] | np.ndarray | None = None,
                    deny: Iterable[int] | np.ndarray | None = None) -> SearchResult:
        """Best ``k`` videos per query, a video scoring the aggregate of its clips' scores.

        ``agg``: ``"max"`` (best clip), ``"mean"``, or ``"logsumexp"`` =
        ``t * log(mean(exp(s / t)))`` with ``t = temperature``: a smooth maximum between mean and
        max that, unlike a plain log-sum-exp, does not favour long videos for having more clips.
        """
        if agg not in AGGREGATIONS:
            raise InvalidArgument(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
        k = as_int(k, "k")
        qs, ws = self._queries(queries, weights)
        bits, mode = self._filter(allow, deny)
        if not self._refined:
            return SearchResult(*self._native.topk_videos(qs, ws, k, agg, float(temperature), bits, mode))
        _, cand = self._native.topk_videos(qs, ws, self._candidates(k), agg, float(temperature), bits, mode)
        k_out = min(int(k), self.videos)
        out_s = np.full((len(cand), k_out), -np.inf, np.float32)
        out_i = np.full((len(cand), k_out), -1, np.int64)
        for b, vids in enumerate(cand):
            vids = vids[vids >= 0]
            starts, ends = self.offsets[vids], self.offsets[vids + 1]
            rows = np.concatenate([np.arange(a, e) for a, e in zip(starts, ends)]) if len(vids) else np.zeros(0, np.int64)
            s = self._exact_scores(qs, ws, b, rows).astype(np.float64)
            bounds = np.concatenate([[0], np.cumsum(ends - starts)])
            v = np.array([_aggregate(s[bounds[i]:bounds[i + 1]], agg, temperature) for i in range(len(vids))], np.float32)
            out_s[b], out_i[b] = (a[0] for a in merge_topk(vids[None], v[None], k_out))
        return SearchResult(out_s, out_i)

    def topk_videos_among(self, queries: Queries, k: int, candidates: np.ndarray,
                          weights: Mapping[str, float] | None = None) -> SearchResult:
        """Best ``k`` videos per query among that query's own candidates (agg max, exact vectors of
        this corpus): row ``b`` of ``candidates`` (B, S) lists distinct video ids, padded with -1.
        One native call for the whole batch (the exact stage of a staged ranking)."""
        k = as_int(k, "k")
        qs, ws = self._queries(queries, weights)
        cand = np.ascontiguousarray(as_int_array(np.asarray(candidates), "candidates"))
        if cand.ndim != 2 or cand.shape[0] != len(qs[0]):
            raise InvalidArgument(f"candidates need one row per query: shape ({len(qs[0])}, n), got {cand.shape}")
        if self._refined:
            raise InvalidArgument("topk_videos_among scans the corpus's own vectors; this corpus re-ranks through refine")
        if hasattr(self._native, "topk_videos_among"):
            return SearchResult(*self._native.topk_videos_among(qs, ws, k, cand))
        # the CUDA corpus: one filtered scan per row
        k_out = min(k, self.videos)
        out_s = np.full((len(cand), k_out), -np.inf, np.float32)
        out_i = np.full((len(cand), k_out), -1, np.int64)
        for b in range(len(cand)):
            row = cand[b][cand[b] >= 0]
            if len(row):
                res = self.topk_videos({c: q[b:b + 1] for c, q in zip(self.channel_names, qs)}, k,
                                       weights=dict(zip(self.channel_names, ws)), allow=row)
                out_s[b], out_i[b] = res.scores[0], res.ids[0]
        return SearchResult(out_s, out_i)

    def _candidates(self, k: int) -> int:
        if k < 1:
            raise InvalidArgument(f"k must be >= 1, got {k}")
        return min(k, max(self.rows, 1)) * self.refine_factor  # never past the corpus: no int64 overflow

    def _exact_scores(self, qs: list, ws: list, b: int, rows: np.ndarray) -> np.ndarray:
        """sum_c w_c <q_c[b], x_c[row]> for the given rows, from the exact vectors."""
        total = np.zeros(len(rows), np.float32)
        for (values, scales), q, w in zip(self._exact, qs, ws):
            if w == 0:
                continue
            x = unpack_int4(values[rows]) if values.dtype == np.uint8 else values[rows]
            x = x.astype(np.float32)
            if scales is not None:
                x *= scales[rows, None]
            total += w * (x @ q[b])
        return total

    # -- argument shaping -------------------------------------------------------------------
    def _queries(self, queries: Queries, weights: Mapping[str, float] | None) -> tuple[list, list]:
        if isinstance(queries, np.ndarray):
            if len(self.channel_names) != 1:
                raise InvalidArgument(f"this corpus has channels {self.channel_names}: pass a dict of queries")
            queries = {self.channel_names[0]: queries}
        unknown = set(queries) - set(self.channel_names)
        if unknown:
            raise InvalidArgument(f"unknown channels {sorted(unknown)}; the corpus has {self.channel_names}")
        weights = dict(weights or {})
        unknown = set(weights) - set(self.channel_names)
        if unknown:
            raise InvalidArgument(f"weights name unknown channels {sorted(unknown)}")
        batch = None
        for q in queries.values():
            q = np.asarray(q)
            b = 1 if q.ndim == 1 else q.shape[0]
            batch = b if batch is None else batch
            if b != batch:
                raise InvalidArgument("all channels need the same number of queries")
        qs, ws = [], []
        for name, dim in zip(self.channel_names, self._native.dims):
            if name in queries:
                q = np.asarray(queries[name])
                if q.dtype != np.float32:
                    if not np.issubdtype(q.dtype, np.floating):
                        raise WrongType(f"queries must be floating point, got {q.dtype}")
                    q = q.astype(np.float32)
                q = np.ascontiguousarray(q.reshape(1, -1) if q.ndim == 1 else q)
                w = float(weights.get(name, 1.0))
            else:  # a channel the query does not use costs a zero weight, not a separate pass
                q = np.zeros((batch or 0, dim), np.float32)
                w = 0.0
            qs.append(q)
            ws.append(w)
        return qs, ws

    def _filter(self, allow, deny) -> tuple[np.ndarray | None, str]:
        if allow is not None and deny is not None:
            raise InvalidArgument("pass either allow or deny, not both")
        if allow is not None:
            if isinstance(allow, np.ndarray) and allow.dtype == bool and len(allow) == self.videos and allow.all():
                return None, "deny"  # all eligible: an unfiltered scan (a filtered one walks the bits video by video)
            return video_bitset(allow, self.videos), "allow"
        if deny is not None:
            return video_bitset(deny, self.videos), "deny"
        return None, "deny"


def merge_topk(ids: np.ndarray, scores: np.ndarray, k: int, deny: Iterable[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best ``k`` of candidate ``(ids, scores)`` (B, n) by score, ties to the lower
    id, without padding (-1) or ``deny``'d ids: ``(scores (B, k) padded -inf, ids (B, k) padded
    -1)``. The engine's one merge of top-k lists (shards, the batcher, re-ranking), native."""
    return _core.merge_topk(np.asarray(ids, np.int64), np.asarray(scores, np.float32), as_int(k, "k"),
                            None if deny is None else [int(d) for d in deny])


def cuda_available() -> bool:
    """Whether ``Corpus(device="cuda")`` can work here: CUDA kernels built and a device present."""
    return hasattr(_core, "CudaCorpus") and bool(_core.cuda_search_available())


def _native_class(device: str):
    if device == "cpu":
        return _core.SearchCorpus
    if device == "cuda":
        if not hasattr(_core, "CudaCorpus"):
            raise RuntimeError("this build of ivcr_engine has no CUDA kernels (nvcc was not found when it was built)")
        return _core.CudaCorpus
    raise InvalidArgument(f"device must be 'cpu' or 'cuda', got {device!r}")


def _aggregate(s: np.ndarray, agg: str, temperature: float) -> float:
    """The video aggregations of the native scan, for re-ranking (same definitions)."""
    if agg == "max":
        return float(s.max())
    if agg == "mean":
        return float(s.mean())
    m = s.max()
    return float(m + temperature * np.log(np.mean(np.exp((s - m) / temperature))))
