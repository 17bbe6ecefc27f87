"""Plain NumPy references for the search core: obviously correct, float64, no cleverness."""
from __future__ import annotations

import numpy as np


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """Packed int4 rows, one value at a time: in each group of 16 bytes, byte j holds dim j of
    the group's 32 in its low four bits and dim j + 16 in its high four, each as value + 8."""
    n, nbytes = packed.shape
    out = np.zeros((n, 2 * nbytes), np.int64)
    for r in range(n):
        for i in range(nbytes):
            byte = int(packed[r, i])
            group, j = divmod(i, 16)
            for dim, nibble in ((group * 32 + j, byte & 15), (group * 32 + j + 16, byte >> 4)):
                out[r, dim] = nibble - 8
    return out


def int4_query(q: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Query rows as an int4 channel's kernel takes them, dequantised (float64, weight folded in):
    each row times the weight, in float32, rounded to -127..127 steps of max|row| / 127 (the
    kernel multiplies bytes). The float32 steps follow the core's, so the integers are the same."""
    wq = np.float32(weight) * np.asarray(q, np.float32)
    m = np.abs(wq).max(axis=1, keepdims=True).astype(np.float64)
    scale = (m / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    ints = np.where(scale > 0, np.rint(wq / safe), 0)
    return ints.astype(np.float64) * scale.astype(np.float64)


def dequantize(channel) -> np.ndarray:
    if isinstance(channel, tuple):
        values, scales = channel
        if values.dtype == np.uint8:
            values = unpack_int4(values)
        return values.astype(np.float64) * scales.astype(np.float64)[:, None]
    return np.asarray(channel, dtype=np.float64)


def clip_scores(channels: list, queries: list, weights: list) -> np.ndarray:
    """B x N float64 fused scores sum_c w_c <q_c, e_c>."""
    total = None
    for ch, q, w in zip(channels, queries, weights):
        s = w * (np.asarray(q, np.float64) @ dequantize(ch).T)
        total = s if total is None else total + s
    return total


def video_scores(scores: np.ndarray, offsets: np.ndarray, agg: str, temperature: float = 0.1) -> np.ndarray:
    """B x V aggregated scores; videos without clips get NaN (they are never returned)."""
    B, V = scores.shape[0], len(offsets) - 1
    out = np.full((B, V), np.nan)
    for v in range(V):
        seg = scores[:, offsets[v]:offsets[v + 1]]
        if seg.shape[1] == 0:
            continue
        if agg == "max":
            out[:, v] = seg.max(axis=1)
        elif agg == "mean":
            out[:, v] = seg.mean(axis=1)
        else:
            m = seg.max(axis=1, keepdims=True)
            out[:, v] = (m + temperature * np.log(np.mean(np.exp((seg - m) / temperature), axis=1, keepdims=True)))[:, 0]
    return out


def topk(scores: np.ndarray, k_out: int, eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best k_out per row, ties by lower id, padded with -1 / -inf (NaN = not a candidate)."""
    B, N = scores.shape
    out_s = np.full((B, k_out), -np.inf)
    out_i = np.full((B, k_out), -1, dtype=np.int64)
    for b in range(B):
        ids = np.arange(N)
        ok = ~np.isnan(scores[b])
        if eligible is not None:
            ok &= eligible
        ids = ids[ok]
        order = np.lexsort((ids, -scores[b][ok]))[:k_out]
        out_s[b, :len(order)] = scores[b][ok][order]
        out_i[b, :len(order)] = ids[order]
    return out_s, out_i


def eligible_clips(offsets: np.ndarray, video_mask: np.ndarray) -> np.ndarray:
    return np.repeat(video_mask, np.diff(offsets))
