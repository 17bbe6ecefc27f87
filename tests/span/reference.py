"""Plain Python references for span scoring: loops over every (i, j), written for clarity."""
from __future__ import annotations


import numpy as np


def contrast_candidates(s, min_len, max_len, length_weight):
    T = len(s)
    out = []
    for i in range(T):
        best = None
        for j in range(i + min_len - 1, min(T, i + max_len)):
            n = j - i + 1
            inside = float(np.sum(s[i:j + 1], dtype=np.float64))
            mean_in = inside * (1.0 / n)
            rest = T - n
            mean_out = mean_in if rest == 0 else (float(np.sum(s, dtype=np.float64)) - inside) * (1.0 / rest)
            sc = np.float32(mean_in - mean_out + length_weight * n / T)
            if best is None or sc > best[2]:
                best = (i, j, sc)
        if best is not None:
            out.append(best)
    return out


def boundary_candidates(s, min_len, max_len, smooth):
    T = len(s)
    w = max(1, smooth)
    sm = []
    for t in range(T):
        a, b = max(0, t - (w - 1) // 2), min(T, t + w // 2 + 1)
        sm.append(float(np.sum(s[a:b], dtype=np.float64)) / (b - a))
    base = sum(sm) / T
    st = [sm[t] - (sm[t - 1] if t > 0 else base) for t in range(T)]
    ed = [sm[t] - (sm[t + 1] if t + 1 < T else base) for t in range(T)]
    out = []
    for i in range(T):
        js = range(i + min_len - 1, min(T, i + max_len))
        if not len(js):
            continue
        j = max(js, key=lambda j: (ed[j], -j))  # highest ed, then the shortest span
        out.append((i, j, np.float32(st[i] + ed[j])))
    return out


def iou(a0, a1, b0, b1):
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else (1.0 if (a0, a1) == (b0, b1) else 0.0)


def spans(s, t0, t1, method="contrast", min_len=1, max_len=32, top_m=5, nms_iou=0.5, length_weight=0.0, smooth=3):
    """[(start_s, end_s, score, i, j)] best first for one video."""
    s = np.asarray(s, np.float32)
    if len(s) == 0 or min_len > len(s):
        return []
    if method == "contrast":
        cand = contrast_candidates(s, min_len, max_len, length_weight)
    else:
        cand = boundary_candidates(s, min_len, max_len, smooth)
    cand.sort(key=lambda c: (-c[2], c[0], c[1]))
    kept = []
    for i, j, sc in cand:
        if len(kept) == top_m:
            break
        if all(iou(t0[i], t1[j], k[0], k[1]) <= nms_iou for k in kept):
            kept.append((t0[i], t1[j], float(sc), i, j))
    return kept


def spans_vectorised(scores, offsets, t0, t1, min_len, max_len, top_m, nms_iou, length_weight):
    """A NumPy implementation of the contrast method that is as fast as NumPy reasonably gets
    (all (i, len) pairs of all videos of one length at once): the benchmark's baseline."""
    V = len(offsets) - 1
    lengths = np.diff(offsets)
    out = []
    T_max = int(lengths.max()) if V else 0
    # Pad to (V, T_max) so every video's spans come from one set of array operations.
    pad = np.full((V, T_max), 0.0)
    valid = np.arange(T_max)[None, :] < lengths[:, None]
    pad[valid] = scores
    prefix = np.concatenate([np.zeros((V, 1)), np.cumsum(pad, axis=1)], axis=1)
    total = prefix[np.arange(V), lengths]
    best = np.full((V, T_max), -np.inf, np.float32)
    best_j = np.full((V, T_max), -1)
    i = np.arange(T_max)[None, :]
    for n in range(min_len, max_len + 1):
        j = i + n - 1
        ok = j < lengths[:, None]
        jj = np.minimum(j, T_max - 1)
        inside = np.take_along_axis(prefix, jj + 1, 1) - prefix[:, :T_max]
        rest = (lengths[:, None] - n).astype(np.float64)
        mean_in = inside * (1.0 / n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_out = np.where(rest > 0, (total[:, None] - inside) * (1.0 / np.where(rest > 0, rest, 1)), mean_in)
        sc = (mean_in - mean_out + length_weight * n / np.maximum(lengths[:, None], 1)).astype(np.float32)
        better = ok & (sc > best)
        best = np.where(better, sc, best)
        best_j = np.where(better, jj, best_j)
    for v in range(V):
        T = lengths[v]
        o = offsets[v]
        cand_i = np.nonzero(best_j[v, :T] >= 0)[0]
        order = np.lexsort((best_j[v, cand_i], cand_i, -best[v, cand_i]))
        kept = []
        for c in cand_i[order]:
            if len(kept) == top_m:
                break
            a, b = t0[o + c], t1[o + best_j[v, c]]
            if all(iou(a, b, k[0], k[1]) <= nms_iou for k in kept):
                kept.append((a, b, float(best[v, c]), c, best_j[v, c]))
        out.append(kept)
    return out
