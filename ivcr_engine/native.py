"""The native engine (libivcr) through its C ABI, as any host uses it: include/ivcr.h is the
contract, and this module is its Python host (ctypes, no extension code of its own).

``NativeIndex`` opens an index folder and searches it by query rows (``search_vectors``: the
Python path's own encoder hands its rows over) or by text (``search``: the engine's native
encoder, for indexes of the default multilingual model). ``library_path``, ``include_dir`` and
``pkgconfig_dir`` say where the installed package keeps the library, its header and its
pkg-config file (``ivcr config`` prints them for a compiler).
"""
from __future__ import annotations

import ctypes as C
import importlib.util
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import EngineFault, IndexDamaged, InvalidArgument, MissingFile, NotFound

ABI_VERSION = 1  # include/ivcr.h IVCR_ABI_VERSION, the version this host was written for


def package_dir() -> Path:
    """The installed package folder that holds the compiled parts (with an editable install, the
    site-packages folder the build went to, not the source tree)."""
    spec = importlib.util.find_spec("ivcr_engine._core")
    if spec is None or spec.origin is None:
        raise MissingFile("ivcr_engine's native core is not built; run `make build`")
    return Path(spec.origin).parent


def library_path() -> Path:
    """The installed libivcr, or the one ``$IVCR_LIBIVCR`` names (a sanitizer or debug build)."""
    return Path(os.environ.get("IVCR_LIBIVCR") or package_dir() / "lib" / "libivcr.so")


def include_dir() -> Path:
    return package_dir() / "include"


def pkgconfig_dir() -> Path:
    return package_dir() / "lib" / "pkgconfig"


class _Hit(C.Structure):
    _fields_ = [("ref", C.c_int64), ("video_id", C.c_char_p), ("name", C.c_char_p), ("start", C.c_double),
                ("end", C.c_double), ("score", C.c_float), ("moment_score", C.c_float), ("duration", C.c_double)]


class _Line(C.Structure):
    _fields_ = [("source", C.c_char_p), ("start", C.c_double), ("end", C.c_double), ("text", C.c_char_p),
                ("match", C.c_float)]


_lib = None
_lib_lock = threading.Lock()
_P = C.c_void_p
_SIGNATURES = {
    "ivcr_abi_version": (C.c_int, []),
    "ivcr_last_error": (C.c_char_p, []),
    "ivcr_open_options_new": (C.c_int, [C.POINTER(_P)]),
    "ivcr_open_options_free": (None, [_P]),
    "ivcr_open_options_set_model_dir": (C.c_int, [_P, C.c_char_p]),
    "ivcr_open_options_set_moment_edges": (C.c_int, [_P, C.c_char_p]),
    "ivcr_open_options_set_prefault": (C.c_int, [_P, C.c_int]),
    "ivcr_index_open": (C.c_int, [C.c_char_p, _P, C.POINTER(_P)]),
    "ivcr_index_close": (None, [_P]),
    "ivcr_index_refresh": (C.c_int, [_P, C.POINTER(C.c_int)]),
    "ivcr_index_video_count": (C.c_size_t, [_P]),
    "ivcr_index_live_count": (C.c_size_t, [_P]),
    "ivcr_index_channel_dim": (C.c_int, [_P, C.c_char_p]),
    "ivcr_index_text_model": (C.c_char_p, [_P]),
    "ivcr_index_line_reads": (C.c_size_t, [_P]),
    "ivcr_index_locked_bytes": (C.c_int, [_P, C.POINTER(C.c_size_t), C.POINTER(C.c_size_t)]),
    "ivcr_queries_new": (C.c_int, [C.c_size_t, C.POINTER(_P)]),
    "ivcr_queries_free": (None, [_P]),
    "ivcr_queries_set_channel": (C.c_int, [_P, C.c_char_p, _P, C.c_size_t]),
    "ivcr_queries_set_lexical": (C.c_int, [_P, C.c_size_t, _P, _P, C.c_size_t, _P, _P, C.c_size_t]),
    "ivcr_queries_set_lexical_text": (C.c_int, [_P, C.c_size_t, C.c_char_p]),
    "ivcr_queries_channel": (C.c_int, [_P, C.c_char_p, C.POINTER(C.POINTER(C.c_float)), C.POINTER(C.c_size_t)]),
    "ivcr_encode_queries": (C.c_int, [_P, C.POINTER(C.c_char_p), C.c_size_t, C.POINTER(_P)]),
    "ivcr_text_encoder_open": (C.c_int, [C.c_char_p, C.c_char_p, C.POINTER(_P)]),
    "ivcr_text_encoder_free": (None, [_P]),
    "ivcr_text_encoder_dim": (C.c_size_t, [_P]),
    "ivcr_text_encoder_encode": (C.c_int, [_P, C.POINTER(C.c_char_p), C.c_size_t, _P, C.c_size_t]),
    "ivcr_query_shape_open": (C.c_int, [C.c_char_p, C.c_char_p, C.c_char_p, C.POINTER(_P)]),
    "ivcr_query_shape_free": (None, [_P]),
    "ivcr_query_shape_chance": (C.c_float, [_P]),
    "ivcr_query_shape_rows": (C.c_int, [_P, _P, C.c_size_t, C.c_size_t, C.POINTER(C.c_char_p), C.c_size_t,
                                        C.POINTER(_P)]),
    "ivcr_search_options_new": (C.c_int, [C.POINTER(_P)]),
    "ivcr_search_options_free": (None, [_P]),
    "ivcr_search_options_set_weight": (C.c_int, [_P, C.c_char_p, C.c_float]),
    "ivcr_search_options_set_allow": (C.c_int, [_P, _P, C.c_size_t]),
    "ivcr_search_options_set_deny": (C.c_int, [_P, _P, C.c_size_t]),
    "ivcr_search_options_set_moments": (C.c_int, [_P, C.c_int]),
    "ivcr_search_options_set_candidates": (C.c_int, [_P, _P, C.c_size_t, C.c_size_t]),
    "ivcr_search_options_set_eligible": (C.c_int, [_P, _P, C.c_size_t]),
    "ivcr_search_options_set_first_stage": (C.c_int, [_P, C.c_int64, C.c_int64, C.c_int64, C.c_double, C.c_int64]),
    "ivcr_results_stage": (C.c_char_p, [_P]),
    "ivcr_results_stage_ms": (C.c_int, [_P, C.c_char_p, C.POINTER(C.c_double)]),
    "ivcr_evidence": (C.c_int, [_P, _P, C.c_int64, C.c_double, C.c_double, _P, C.POINTER(_P)]),
    "ivcr_search_options_set_evidence": (C.c_int, [_P, C.c_int]),
    "ivcr_search_options_set_window": (C.c_int, [_P, C.c_double, C.c_double]),
    "ivcr_search_batch": (C.c_int, [_P, C.POINTER(C.c_char_p), C.c_size_t, C.c_int, _P, C.POINTER(_P)]),
    "ivcr_search_vectors_batch": (C.c_int, [_P, _P, C.c_int, _P, C.POINTER(_P)]),
    "ivcr_moments": (C.c_int, [_P, _P, _P, C.c_size_t, _P, C.POINTER(_P)]),
    "ivcr_moment_vector": (C.c_int, [_P, C.c_int64, C.c_double, C.c_double, C.c_char_p, _P, C.c_size_t]),
    "ivcr_results_count": (C.c_size_t, [_P]),
    "ivcr_results_ranking": (C.c_size_t, [_P, _P, _P, C.c_size_t]),
    "ivcr_results_hit": (C.c_int, [_P, C.c_size_t, C.POINTER(_Hit)]),
    "ivcr_results_line_count": (C.c_size_t, [_P, C.c_size_t]),
    "ivcr_results_line": (C.c_int, [_P, C.c_size_t, C.c_size_t, C.POINTER(_Line)]),
    "ivcr_results_concept_count": (C.c_size_t, [_P, C.c_size_t]),
    "ivcr_results_concept": (C.c_char_p, [_P, C.c_size_t, C.c_size_t]),
    "ivcr_results_channel_score": (C.c_float, [_P, C.c_size_t, C.c_char_p]),
    "ivcr_results_free": (None, [_P]),
}
# ivcr_status -> the package's typed errors (errors.py), so every face maps them once
_ERRORS = {1: InvalidArgument, 2: NotFound, 3: IndexDamaged, 4: MemoryError, 5: EngineFault, 6: EngineFault}


def lib() -> C.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            path = library_path()
            if not path.is_file():
                raise MissingFile(f"libivcr is not built at {path}; run `make build`")
            handle = C.CDLL(str(path))
            for name, (res, args) in _SIGNATURES.items():
                fn = getattr(handle, name, None)  # (a library from before a function was added lacks it:
                if fn is not None:                # calling that one fails, the rest work)
                    fn.restype, fn.argtypes = res, args
            if handle.ivcr_abi_version() != ABI_VERSION:
                raise EngineFault(f"{path} implements ABI {handle.ivcr_abi_version()}; this package needs {ABI_VERSION}")
            _lib = handle
        return _lib


STAGE_PARTS = ("words", "first", "prerank", "exact", "lexical")


def stage_ms(results) -> dict[str, float]:
    """Where the ranking call behind ``results`` spent its time, ms per part (ivcr_results_stage_ms;
    empty from a library that predates it, as an A/B base may, and without "words" from one that
    predates that part)."""
    fn = getattr(lib(), "ivcr_results_stage_ms", None)
    if fn is None:
        return {}
    ms = C.c_double()
    out = {}
    for part in STAGE_PARTS:
        status = fn(results, part.encode(), C.byref(ms))
        if status and part == "words":
            continue
        _check(status)
        out[part] = ms.value
    return out


class Unsupported(EngineFault):
    """IVCR_UNSUPPORTED: this build, CPU or index cannot do it (e.g. no native encoder)."""


def _check(status: int) -> None:
    if status != 0:
        msg = lib().ivcr_last_error().decode("utf-8", "replace")
        raise (Unsupported if status == 5 else _ERRORS.get(status, EngineFault))(msg)


def _ptr(a: np.ndarray) -> C.c_void_p:
    return C.c_void_p(a.ctypes.data)


@dataclass
class NativeHit:
    ref: int
    video_id: int
    path: str
    start: float
    end: float
    score: float
    moment_score: float
    duration: float
    lines: list = field(default_factory=list)       # (source, start, end, text)
    line_match: list = field(default_factory=list)  # per line; NaN where unscored
    concepts: list = field(default_factory=list)
    channel_scores: dict = field(default_factory=dict)


def _read_results(res: C.c_void_p, channels: Sequence[str]) -> list[NativeHit]:
    L = lib()
    try:
        hits = []
        for i in range(L.ivcr_results_count(res)):
            h = _Hit()
            _check(L.ivcr_results_hit(res, i, C.byref(h)))
            hit = NativeHit(int(h.ref), int(h.video_id), h.name.decode(), h.start, h.end, h.score, h.moment_score,
                            h.duration)
            for j in range(L.ivcr_results_line_count(res, i)):
                line = _Line()
                _check(L.ivcr_results_line(res, i, j, C.byref(line)))
                hit.lines.append((line.source.decode(), line.start, line.end, line.text.decode()))
                hit.line_match.append(line.match)
            hit.concepts = [L.ivcr_results_concept(res, i, j).decode() for j in range(L.ivcr_results_concept_count(res, i))]
            for c in channels:
                s = L.ivcr_results_channel_score(res, i, c.encode())
                if not math.isnan(s):
                    hit.channel_scores[c] = s
            hits.append(hit)
        return hits
    finally:
        L.ivcr_results_free(res)


TEXT_ROWS = ("concept", "speech", "subtitle", "ocr")


def _channel_rows(q: C.c_void_p, batch: int, channels: Sequence[str]) -> dict[str, np.ndarray]:
    """Copies of a queries object's rows of ``channels`` (those it has)."""
    L = lib()
    out = {}
    for c in channels:
        rows, dim = C.POINTER(C.c_float)(), C.c_size_t()
        if L.ivcr_queries_channel(q, c.encode(), C.byref(rows), C.byref(dim)) == 0:
            # copied into a plain float32 array: numpy's ctypes view carries an explicit-byte-order
            # dtype that the native core's strict dtype check refuses as "not float32"
            a = np.empty((batch, dim.value), np.float32)
            C.memmove(a.ctypes.data, rows, a.nbytes)
            out[c] = a
    return out


class QueryShape:
    """A text model's query shaping in the engine (``ivcr_query_shape_*``): unit query vectors ->
    each text channel's rows, calibrated on the query's own chance, with the presence baseline."""

    def __init__(self, model_dir: str | Path, text_model: str, frame_model: str | None = None):
        L = lib()
        self._h = _P()
        _check(L.ivcr_query_shape_open(str(model_dir).encode(), text_model.encode(),
                                       None if frame_model is None else frame_model.encode(), C.byref(self._h)))

    @property
    def chance(self) -> float:
        return float(lib().ivcr_query_shape_chance(self._h))

    def rows(self, unit: np.ndarray, channels: Sequence[str]) -> dict[str, np.ndarray]:
        L = lib()
        u = np.ascontiguousarray(np.atleast_2d(np.asarray(unit, np.float32)))
        names = [c for c in channels if c in TEXT_ROWS]
        arr = (C.c_char_p * len(names))(*[c.encode() for c in names])
        q = _P()
        _check(L.ivcr_query_shape_rows(self._h, _ptr(u), u.shape[0], u.shape[1], arr, len(names), C.byref(q)))
        try:
            return _channel_rows(q, u.shape[0], names)
        finally:
            L.ivcr_queries_free(q)

    def __del__(self):
        try:
            if self._h:
                lib().ivcr_query_shape_free(self._h)
        except Exception:  # interpreter shutdown
            pass


class NativeTextEncoder:
    """libivcr's query encoder of one text model, alone (``ivcr_text_encoder_*``): texts -> the
    unit query vectors ``ivcr_search`` shapes its rows from. ``Unsupported`` where the model has
    no native encoder or this CPU cannot run it; ``NotFound`` where its weights were not prepared."""

    def __init__(self, model_dir: str | Path, text_model: str):
        L = lib()
        self._h = _P()
        _check(L.ivcr_text_encoder_open(str(model_dir).encode(), text_model.encode(), C.byref(self._h)))
        self.dim = int(L.ivcr_text_encoder_dim(self._h))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors, each the text's alone whatever the batch. A C string ends
        at NUL, so a NUL in a text is read as a space; unpaired surrogates as U+FFFD."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        if texts:
            raw = [t.replace("\0", " ").encode("utf-8", "replace") for t in texts]
            arr = (C.c_char_p * len(raw))(*raw)
            _check(lib().ivcr_text_encoder_encode(self._h, arr, len(raw), _ptr(out), out.size))
        return out

    def __del__(self):
        try:
            if self._h:
                lib().ivcr_text_encoder_free(self._h)
        except Exception:  # interpreter shutdown
            pass


class NativeIndex:
    """An index folder opened by the native engine. ``moment_edges``: "lines", "snap" or "grid";
    ``prefault``: fault every row in at open (a long-running server)."""

    def __init__(self, root: str | Path, model_dir: str | Path | None = None, moment_edges: str = "lines",
                 prefault: bool = False):
        L = lib()
        opts = _P()
        _check(L.ivcr_open_options_new(C.byref(opts)))
        try:
            if model_dir is not None:
                _check(L.ivcr_open_options_set_model_dir(opts, str(model_dir).encode()))
            _check(L.ivcr_open_options_set_moment_edges(opts, moment_edges.encode()))
            _check(L.ivcr_open_options_set_prefault(opts, int(bool(prefault))))
            self._h = _P()
            _check(L.ivcr_index_open(str(root).encode(), opts, C.byref(self._h)))
        finally:
            L.ivcr_open_options_free(opts)

    def close(self) -> None:
        if self._h:
            lib().ivcr_index_close(self._h)
            self._h = _P()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def refresh(self) -> bool:
        changed = C.c_int(0)
        _check(lib().ivcr_index_refresh(self._h, C.byref(changed)))
        return bool(changed.value)

    def num_refs(self) -> int:
        return int(lib().ivcr_index_video_count(self._h))

    def __len__(self) -> int:
        return int(lib().ivcr_index_live_count(self._h))

    def line_reads(self) -> int:
        """Videos whose timed lines this snapshot has read from the index (the kept lines' misses)."""
        return int(lib().ivcr_index_line_reads(self._h))

    def locked_bytes(self) -> tuple[int, int]:
        """(locked, unlocked): bytes a prefaulted handle keeps locked in memory, and those it meant to
        lock but RLIMIT_MEMLOCK refused (ivcr_index_locked_bytes); (0, 0) from an older library."""
        fn = getattr(lib(), "ivcr_index_locked_bytes", None)
        if fn is None:
            return 0, 0
        locked, unlocked = C.c_size_t(), C.c_size_t()
        _check(fn(self._h, C.byref(locked), C.byref(unlocked)))
        return int(locked.value), int(unlocked.value)

    def channel_dim(self, channel: str) -> int:
        return int(lib().ivcr_index_channel_dim(self._h, channel.encode()))

    @property
    def text_model(self) -> str:
        return lib().ivcr_index_text_model(self._h).decode()

    # -- queries ------------------------------------------------------------------------------
    def _queries(self, queries: Mapping[str, np.ndarray], lexical: Sequence[tuple] | None = None) -> C.c_void_p:
        """A queries object from per-channel (B, d) rows; ``lexical``: per row None, the row's
        text (the engine finds its lines) or matches a caller found (video refs -> coverage, line
        rowids -> coverage)."""
        L = lib()
        rows = {c: np.ascontiguousarray(np.atleast_2d(np.asarray(q, np.float32))) for c, q in queries.items()}
        batch = next(iter(rows.values())).shape[0] if rows else len(lexical or ())
        q = _P()
        _check(L.ivcr_queries_new(batch, C.byref(q)))
        try:
            for c, r in rows.items():
                if r.shape[0] != batch:
                    raise InvalidArgument(f"query channels disagree on the batch size: {r.shape[0]} != {batch}")
                _check(L.ivcr_queries_set_channel(q, c.encode(), _ptr(r), r.shape[1]))
            for b, lex in enumerate(lexical or ()):
                if lex is None:
                    continue
                if isinstance(lex, str):
                    _check(L.ivcr_queries_set_lexical_text(q, b, lex.encode()))
                    continue
                videos, lines = lex
                vr = np.fromiter(videos.keys(), np.int64, len(videos))
                vc = np.fromiter(videos.values(), np.float32, len(videos))
                lr = np.fromiter(lines.keys(), np.int64, len(lines))
                lc = np.fromiter(lines.values(), np.float32, len(lines))
                _check(L.ivcr_queries_set_lexical(q, b, _ptr(vr), _ptr(vc), len(vr), _ptr(lr), _ptr(lc), len(lr)))
        except BaseException:
            L.ivcr_queries_free(q)
            raise
        return q

    def _options(self, weights, allow, deny, moments: int, evidence: bool, window, candidates=None,
                 eligible=None, stage: Sequence | None = None) -> C.c_void_p:
        L = lib()
        o = _P()
        _check(L.ivcr_search_options_new(C.byref(o)))
        try:
            for c, w in (weights or {}).items():
                _check(L.ivcr_search_options_set_weight(o, c.encode(), float(w)))
            for setter, refs in ((L.ivcr_search_options_set_allow, allow), (L.ivcr_search_options_set_deny, deny)):
                if refs is not None:
                    r = np.ascontiguousarray(np.asarray(list(refs), np.int64))
                    _check(setter(o, _ptr(r), len(r)))
            _check(L.ivcr_search_options_set_moments(o, int(moments)))
            _check(L.ivcr_search_options_set_evidence(o, int(bool(evidence))))
            if window is not None:
                _check(L.ivcr_search_options_set_window(o, float(window[0]), float(window[1])))
            if candidates is not None:
                cand = np.ascontiguousarray(np.asarray(candidates, np.int64))
                _check(L.ivcr_search_options_set_candidates(o, _ptr(cand), cand.shape[0], cand.shape[1]))
            if eligible is not None:
                mask = np.ascontiguousarray(np.asarray(eligible, np.uint8))
                _check(L.ivcr_search_options_set_eligible(o, _ptr(mask), len(mask)))
            if stage is not None:
                _check(L.ivcr_search_options_set_first_stage(o, *stage))
        except BaseException:
            L.ivcr_search_options_free(o)
            raise
        return o

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The native encoder's query rows for ``texts`` (the rows ``search`` uses)."""
        L = lib()
        arr = (C.c_char_p * len(texts))(*[t.encode() for t in texts])
        q = _P()
        _check(L.ivcr_encode_queries(self._h, arr, len(texts), C.byref(q)))
        try:
            return _channel_rows(q, len(texts), TEXT_ROWS)
        finally:
            L.ivcr_queries_free(q)

    # -- search -------------------------------------------------------------------------------
    def search_vectors(self, queries: Mapping[str, np.ndarray], k: int = 10, weights: Mapping[str, float] | None = None,
                       allow=None, deny=None, moments: int = 1, evidence: bool = True,
                       lexical: Sequence[tuple] | None = None, candidates: np.ndarray | None = None,
                       eligible: np.ndarray | None = None) -> list[list[NativeHit]]:
        """One list of hits per query row (all rows ranked in one native call). ``candidates``:
        (B, n) refs per row from a first stage (-1 padded); ``eligible``: a mask over refs."""
        L = lib()
        q = self._queries(queries, lexical)
        o = self._options(weights, allow, deny, moments, evidence, None, candidates, eligible)
        try:
            batch = next(iter(queries.values())).shape[0] if queries else len(lexical)
            out = (_P * batch)()
            _check(L.ivcr_search_vectors_batch(self._h, q, int(k), o, out))
            return [_read_results(out[b], list(queries) + ["lexical"]) for b in range(batch)]
        finally:
            L.ivcr_search_options_free(o)
            L.ivcr_queries_free(q)

    def rank_vectors(self, queries: Mapping[str, np.ndarray], k: int, weights: Mapping[str, float] | None = None,
                     lexical: Sequence[tuple] | None = None, candidates: np.ndarray | None = None,
                     eligible: np.ndarray | None = None, stage: Sequence | None = None,
                     paths: list | None = None, times: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Videos only: each row's top k as ``(refs (B, k) padded -1, scores (B, k) padded -inf)``,
        read back in one call a row (``ivcr_results_ranking``). ``stage``: the staged ranking's
        sizes (min rows, shortlist, coarse shortlist, lists' minimum eligible share, clips per
        video); ``paths``, when given, receives each row's path ("exact", "lists", ...);
        ``times``, the call's ms per part (``stage_ms``: STAGE_PARTS), once a call."""
        L = lib()
        q = self._queries(queries, lexical)
        o = self._options(weights, None, None, 0, False, None, candidates, eligible, stage)
        try:
            batch = next(iter(queries.values())).shape[0] if queries else len(lexical)
            out = (_P * batch)()
            _check(L.ivcr_search_vectors_batch(self._h, q, int(k), o, out))
            if times is not None and batch:
                times.append(stage_ms(out[0]))
            refs = np.full((batch, k), -1, np.int64)
            scores = np.full((batch, k), -np.inf, np.float32)
            for b in range(batch):
                L.ivcr_results_ranking(out[b], _ptr(refs[b]), _ptr(scores[b]), k)
                if paths is not None:
                    paths.append(L.ivcr_results_stage(out[b]).decode())
                L.ivcr_results_free(out[b])
            return refs, scores
        finally:
            L.ivcr_search_options_free(o)
            L.ivcr_queries_free(q)

    def search(self, texts: str | Sequence[str], k: int = 10, weights: Mapping[str, float] | None = None,
               allow=None, deny=None, moments: int = 1, evidence: bool = True, stage: Sequence | None = None,
               paths: list | None = None) -> list[list[NativeHit]]:
        """Text queries through the native encoder (see ``encode``), one list of hits per text;
        ``stage`` and ``paths`` as for ``rank_vectors``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        L = lib()
        o = self._options(weights, allow, deny, moments, evidence, None, stage=stage)
        try:
            arr = (C.c_char_p * len(texts))(*[t.encode() for t in texts])
            out = (_P * len(texts))()
            _check(L.ivcr_search_batch(self._h, arr, len(texts), int(k), o, out))
            if paths is not None:
                paths += [L.ivcr_results_stage(out[b]).decode() for b in range(len(texts))]
            return [_read_results(out[b], ["concept", "speech", "subtitle", "ocr"]) for b in range(len(texts))]
        finally:
            L.ivcr_search_options_free(o)

    def moments(self, queries: Mapping[str, np.ndarray], videos: Sequence[int], weights=None, window=None,
                top: int = 1, evidence: bool = True, lexical: tuple | None = None) -> list[NativeHit]:
        L = lib()
        q = self._queries(queries, None if lexical is None else [lexical])
        o = self._options(weights, None, None, top, evidence, window)
        try:
            v = np.ascontiguousarray(np.asarray(list(videos), np.int64))
            res = _P()
            _check(L.ivcr_moments(self._h, q, _ptr(v), len(v), o, C.byref(res)))
            return _read_results(res, list(queries) + ["lexical"])
        finally:
            L.ivcr_search_options_free(o)
            L.ivcr_queries_free(q)

    def evidence(self, video: int, start: float, end: float, queries: Mapping[str, np.ndarray] | None = None,
                 weights=None, lexical: tuple | None = None) -> NativeHit:
        """Every line overlapping [start, end] (matched against the query when given) and the
        concepts of its clips, as one hit."""
        L = lib()
        q = self._queries(queries, None if lexical is None else [lexical]) if queries is not None else _P()
        o = self._options(weights, None, None, 1, True, None)
        try:
            res = _P()
            _check(L.ivcr_evidence(self._h, q, int(video), float(start), float(end), o, C.byref(res)))
            return _read_results(res, [])[0]
        finally:
            L.ivcr_search_options_free(o)
            if queries is not None:
                L.ivcr_queries_free(q)

    def moment_vector(self, video: int, start: float, end: float, channel: str = "visual") -> np.ndarray:
        dim = self.channel_dim(channel)
        if dim == 0:
            raise InvalidArgument(f"no channel {channel!r} in this index")
        out = np.zeros(dim, np.float32)
        _check(lib().ivcr_moment_vector(self._h, int(video), float(start), float(end), channel.encode(), _ptr(out), dim))
        return out[None]
