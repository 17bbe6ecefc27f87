"""The LLM responder's plumbing, with a tiny randomly initialised causal LM built here: prompt
carries the dialogue and candidates, generation runs, the answer is parsed by the IVCR rules."""
from __future__ import annotations

import pytest

from ivcr_engine.dialogue import LLMResponder
from ivcr_engine.dialogue.state import Candidate, SessionState


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("lm")
    words = ["[PAD]", "[UNK]", "video", "1", "2", "3", "the", "query", "happens", "in", "s", "-", ".", "12.5s-20.0s"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                eos_token="[PAD]")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(words), n_positions=512, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


def test_prompt_generation_and_parsing(tiny_lm):
    r = LLMResponder(str(tiny_lm), max_new_tokens=6)
    st = SessionState(candidates=[Candidate(4, "/v/a.mp4", 0.8), Candidate(7, "/v/b.mp4", 0.5)],
                      turns=[{"user": "find a parrot", "reply": "video 1"}])
    prompt = r.prompt("video retrieval", st, {"evidence": ["subtitle at 1.0-2.0s: hello"]})
    assert "video 1: /v/a.mp4" in prompt and "video 2: /v/b.mp4" in prompt
    assert "User: find a parrot" in prompt and "evidence: subtitle" in prompt
    text = r.respond("video retrieval", st, {})
    assert isinstance(text, str)
    chosen, span, raw = r.choose(st, {})
    assert raw == r.respond("choose", st, {})  # greedy decoding is deterministic
    assert chosen is None or chosen in st.candidates
    assert span is None or span[0] <= span[1]
