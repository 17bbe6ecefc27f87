"""The process that runs the language model for GGUFResponder (``--responder llm``).

llama.cpp is native code that can crash (an instruction the CPU lacks, a bug in a kernel), hang
or run out of memory, and inside the engine's process any of those takes every session down. So
the model lives here, in a process of its own that the responder starts and supervises
(llm_supervisor.WorkerSupervisor): requests and replies are JSON lines on stdin / stdout, one at a
time, and the worker ends when its stdin closes or its parent dies.

llama.cpp is built portably (scripts/llama_wheel.sh: GGML_BACKEND_DL with one ggml-cpu module per
ISA level), and ggml keeps the best variant whose instructions the CPU reports. Reported is not
enough: on an AMX Xeon (a Sapphire Rapids VM, Linux 6.18, AMX permission granted) the
sapphirerapids variant dies with SIGILL at its first AMX tile instruction, inside ggml's AMX
matmul. So before a model runs, `choose_cpu_variant` has each candidate proven in a throwaway
probe process (load the model, evaluate a prompt, generate): a variant whose probe dies is left
out, and ggml picks again among the rest. The verdict is cached per build, CPU and model, so only
the first start on a machine pays for it (a second or two a variant).
`python -m ivcr_engine.dialogue.llm_worker --info` prints what was chosen (``ivcr info`` runs it
in a subprocess, so even a broken build cannot take ``ivcr info`` down).

Protocol: the worker writes ``{"ready": true, ...backend info}`` once the model is loaded, then
answers each ``{"id", "lang", "block"}`` with ``{"id", "text", "prompt_tokens", "prompt_seconds",
"tokens", "gen_seconds", "seconds"}`` (or ``{"id", "error"}``).

For the chooser's tests, ``IVCR_LLM_PROBE_FAULT`` names a variant: a probe that loads it dies
with SIGILL, as the AMX variant did. For the supervisor's tests, ``IVCR_LLM_WORKER_FAULT_FILE`` names a file that, when it exists as a
request arrives, is read and removed, and its word is done instead of answering: ``hang`` (sleep
until killed) or ``crash`` (SIGSEGV, as a native fault would).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE_TIMEOUT_S = 120
PROBE_PROMPT = b"A video search assistant finds the moment a parrot spreads its wings over the"

# The few-shot documents and their labels live with the responder (gguf_responder.py); the
# worker only evaluates what it is given.


def _die_with_parent() -> None:
    """Exit when the parent process is gone, even while a reply is stuck in native code (a closed
    stdin is only seen between requests). A thread that watches the parent's pid, rather than
    PR_SET_PDEATHSIG, which fires when the parent *thread* that started the worker ends: a
    server's request threads come and go."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def lib_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("llama_cpp")
    return Path(spec.origin).parent / "lib"


def variants_in(lib: Path) -> list[str]:
    """The ggml-cpu variants a portable build ships ("x64", "haswell", ... "sapphirerapids")."""
    return sorted(p.name[len("libggml-cpu-"):-3] for p in lib.glob("libggml-cpu-*.so"))


def load_backends(exclude: set[str] | frozenset = frozenset()) -> dict:
    """Load ggml's backends from llama_cpp's lib folder, less the CPU variants in ``exclude``
    (ggml keeps the best of the others that this CPU reports it can run), and say what was loaded:
    the variant, llama.cpp's system-info string, and whether the build is the portable one."""
    import llama_cpp  # loads libllama, and through it libggml.so.0

    lib = lib_dir()
    # The registry libllama sees is the one in the libggml it loaded by its soname. A wheel holds
    # no symlinks, so libggml.so beside it is a second file, a second library and an empty
    # second registry (llama_cpp._ggml loads that one): take the loaded libggml.so.0 itself.
    libggml = ctypes.CDLL(str(lib / "libggml.so.0"), mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    load = libggml.ggml_backend_load_all_from_path
    load.argtypes, load.restype = [ctypes.c_char_p], None
    variants = variants_in(lib)
    if exclude:  # ggml chooses among the files of one folder: a folder of links to the allowed ones
        with tempfile.TemporaryDirectory(prefix="ivcr-ggml-") as folder:
            for v in variants:
                if v not in exclude:
                    os.symlink(lib / f"libggml-cpu-{v}.so", Path(folder) / f"libggml-cpu-{v}.so")
            load(folder.encode())
    else:
        load(str(lib).encode())
    llama_cpp.llama_backend_init()
    loaded = ""
    try:  # the variant module ggml kept is the one mapped into this process
        for line in Path("/proc/self/maps").read_text().splitlines():
            name = line.rsplit("/", 1)[-1]
            if name.startswith("libggml-cpu-") and name.endswith(".so"):
                loaded = name[len("libggml-cpu-"):-3]
                break
    except OSError:
        pass
    return {
        "llama_cpp": llama_cpp.__version__,
        "portable": bool(variants) and (lib / "IVCR_BUILD_KEY").is_file(),
        "cpu_variants": variants,
        "cpu_variant": loaded or ("built in" if not variants else "none"),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(" |"),
    }


# -- choosing the variant (in the parent: no llama.cpp is loaded here) --------------------------
def _cpu_signature() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.uname().machine
    lines = [l for l in info.splitlines() if l.startswith(("model name", "flags"))][:2]
    return "\n".join(lines + [os.uname().release])


def _choice_file(model_path: Path, cache_dir: Path | None = None) -> Path:
    from ..models.registry import model_dir

    lib = lib_dir()
    build = (lib / "IVCR_BUILD_KEY").read_text().strip() if (lib / "IVCR_BUILD_KEY").is_file() else "unknown"
    st = model_path.stat()
    key = hashlib.sha256(f"{build}\n{_cpu_signature()}\n{model_path.name} {st.st_size}".encode()).hexdigest()[:16]
    return (cache_dir or model_dir() / "llm_cpu_variants") / f"{key}.json"


def choose_cpu_variant(model_path: str | Path, timeout_s: float = PROBE_TIMEOUT_S, cache_dir: Path | None = None) -> dict:
    """``{"variant", "rejected": {variant: why}}``: the CPU variant ggml picks once every variant
    whose probe died on this machine is left out. Probes run one at a time in child processes,
    best first (ggml's own order), until one passes; the verdict is cached (see the module
    docstring; ``cache_dir``: elsewhere than the model folder). Raises RuntimeError when no
    variant runs the model."""
    model_path = Path(model_path)
    cache = _choice_file(model_path, cache_dir)
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except ValueError:
            pass  # a torn write: probe again
    rejected: dict[str, str] = {}
    n_variants = max(1, len(variants_in(lib_dir())))
    while len(rejected) < n_variants:
        cmd = [sys.executable, "-m", "ivcr_engine.dialogue.llm_worker", "--probe", "--model", str(model_path),
               "--exclude", ",".join(sorted(rejected))]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=timeout_s)
            code, stdout, stderr = out.returncode, out.stdout, out.stderr
        except subprocess.TimeoutExpired as exc:
            code, stdout, stderr = None, exc.stdout or b"", exc.stderr or b""
        said = [json.loads(l) for l in stdout.decode("utf-8", "replace").splitlines() if l.startswith("{")]
        loaded = next((d["loaded"] for d in said if "loaded" in d), None)
        if code == 0 and any(d.get("ok") for d in said):
            choice = {"variant": loaded, "rejected": rejected}
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(choice))
            os.replace(tmp, cache)
            return choice
        how = (f"no answer within {timeout_s:g} s" if code is None else
               f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        # Only a native death (a signal) or a hang condemns the variant; an error that Python
        # reports (a model file llama.cpp cannot read, say) would fail every variant alike.
        if code is not None and code > 0:
            raise RuntimeError(f"the LLM cannot run here: its probe failed ({how}): {tail[0]}")
        if loaded is None or loaded in rejected or loaded in ("none", "built in"):
            raise RuntimeError(f"the LLM cannot run here: its probe ({loaded or 'before loading a backend'}) "
                               f"failed, {how}: {tail[0]}")
        rejected[loaded] = how
    raise RuntimeError(f"the LLM cannot run here: every CPU variant failed its probe ({rejected})")


def _probe(model_path: str, exclude: set[str], proto) -> int:
    """Load the backends less ``exclude``, say which variant, then run the model a little: a
    variant that cannot run here dies in this process, after naming itself."""
    import llama_cpp

    info = load_backends(exclude)
    proto.write(json.dumps({"loaded": info["cpu_variant"]}) + "\n")
    proto.flush()
    if os.environ.get("IVCR_LLM_PROBE_FAULT") == info["cpu_variant"]:
        os.kill(os.getpid(), signal.SIGILL)  # the tests' stand-in for an instruction this CPU lacks
    llm = llama_cpp.Llama(model_path, n_ctx=256, n_batch=64, n_threads=1, verbose=False)
    llm.eval(llm.tokenize(PROBE_PROMPT, add_bos=True))
    llm.create_completion(PROBE_PROMPT.decode(), max_tokens=2, temperature=0.0, top_k=1)
    proto.write(json.dumps({"ok": True}) + "\n")
    return 0


class Model:
    """One llama.cpp context with the few-shot documents kept in its KV cache: each reply restores
    exactly one document's state and evaluates only its own block after it, so the same request
    gives the same words whatever came before."""

    def __init__(self, model_path: str, prefixes: dict[str, str], n_ctx: int, n_threads: int, seed: int,
                 max_tokens: int):
        import llama_cpp

        self.max_tokens, self.seed = max_tokens, seed
        # swa_full=False: Gemma 3's sliding-window layers keep their own small cache (the full-size
        # one is not needed for prompts this short, and llama.cpp warns on stderr when it is used)
        self.llm = llama_cpp.Llama(model_path, n_ctx=n_ctx, n_batch=256, n_threads=n_threads,
                                   n_threads_batch=n_threads, seed=seed, swa_full=False, verbose=False)
        self.prefix = {lang: self.llm.tokenize(doc.encode("utf-8"), add_bos=True) for lang, doc in prefixes.items()}
        self.cached: str | None = None  # the language whose document the KV cache holds

    def complete(self, lang: str, block: str) -> dict:
        prefix = self.prefix[lang]
        suffix = self.llm.tokenize(block.encode("utf-8"), add_bos=False)
        if len(prefix) + len(suffix) + self.max_tokens > self.llm.n_ctx():
            return {"text": "", "prompt_tokens": 0, "prompt_seconds": 0.0, "tokens": 0, "gen_seconds": 0.0,
                    "seconds": 0.0}  # too long for the context: the engine's words suffice
        t0 = time.perf_counter()
        self._restore(lang)
        self.llm.eval(suffix)  # timed apart from generation: prompt tokens/s
        t1 = time.perf_counter()
        # the whole prompt is now cached, so generation samples at once from these logits
        out = self.llm.create_completion(prefix + suffix, max_tokens=self.max_tokens, temperature=0.0, top_k=1,
                                         seed=self.seed, stop=["\n", "<end_of_turn>", "<eos>"])
        t2 = time.perf_counter()
        return {"text": out["choices"][0]["text"], "prompt_tokens": len(suffix), "prompt_seconds": t1 - t0,
                "tokens": int(out["usage"]["completion_tokens"]), "gen_seconds": t2 - t1, "seconds": t2 - t0}

    def _restore(self, lang: str) -> None:
        prefix = self.prefix[lang]
        if self.cached == lang and self.llm.n_tokens >= len(prefix):
            self.llm.n_tokens = len(prefix)  # eval() drops the cache beyond this point
            return
        self.llm.reset()
        self.llm.eval(prefix)
        self.cached = lang


def _fault() -> None:
    path = os.environ.get("IVCR_LLM_WORKER_FAULT_FILE")
    if not path or not os.path.exists(path):
        return
    word = Path(path).read_text().strip()
    os.unlink(path)
    if word == "hang":
        while True:
            time.sleep(3600)
    if word == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ivcr_engine.dialogue.llm_worker")
    ap.add_argument("--info", action="store_true", help="print the loaded backend as JSON and exit")
    ap.add_argument("--probe", action="store_true", help="name the variant ggml loads, then run --model a little")
    ap.add_argument("--exclude", default="", help="CPU variants to leave out, comma-separated")
    ap.add_argument("--model")
    ap.add_argument("--prefixes", help="JSON file: {lang: few-shot document}")
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=56)
    args = ap.parse_args(argv)

    exclude = {v for v in args.exclude.split(",") if v}
    _die_with_parent()
    # the protocol gets its own copy of stdout; fd 1 becomes stderr, so whatever native code prints
    # can never be read as a reply
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    if args.probe:
        return _probe(args.model, exclude, proto)
    info = load_backends(exclude)
    if args.info:
        proto.write(json.dumps(info) + "\n")
        return 0
    prefixes = json.loads(Path(args.prefixes).read_text(encoding="utf-8"))
    model = Model(args.model, prefixes, args.n_ctx, args.threads, args.seed, args.max_tokens)
    proto.write(json.dumps({"ready": True, "pid": os.getpid(), **info}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        _fault()
        try:
            out = model.complete(req["lang"], req["block"])
        except Exception as exc:  # a Python-level failure is answered; the worker goes on
            out = {"error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps({"id": req["id"], **out}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
