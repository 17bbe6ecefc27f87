"""Responders turn the outcome of a turn into words. The template responder is the default:
deterministic, no model, in the IVCR answer format ("The intent is video retrieval. The given
query happens in video 3."). The LLM responder asks any causal LM (transformers) to write the
reply and parses its "video N" / "Xs-Ys" back with the IVCR rules; gguf_responder.py's
GGUFResponder (``--responder llm``) keeps the template's answer line and lets a small native model
add the explanation."""
from __future__ import annotations

import re
from typing import Protocol

from .messages import say
from .state import Candidate, Moment, Outcome, SessionState


class Responder(Protocol):
    def respond(self, intent: str, state: SessionState, outcome: Outcome) -> str: ...


def _video_line(state: SessionState, video: int) -> str:
    n = state.candidate_number(video)
    return f"video {n}" if n else f"video (index {video})"


def _span(m: Moment) -> str:
    return f"{m.start:.1f}s-{m.end:.1f}s"


class TemplateResponder:
    """Replies in the turn's language (``outcome["lang"]``); the IVCR format line comes first,
    with "video N" and "Xs-Ys" verbatim in either language."""

    def respond(self, intent: str, state: SessionState, outcome: Outcome | dict) -> str:
        o = Outcome.of(outcome)
        if o.kind in ("help", "chat"):
            return say(o.kind, o.lang)
        if o.kind == "nothing":
            return o.why or say("nothing", o.lang)
        parts = []
        if o.kind == "video":
            parts.append(say("video", o.lang, video=_video_line(state, o.video)))
        elif o.kind == "moment":
            parts.append(say("moment", o.lang, span=_span(o.moment)))
        elif o.kind == "whole":
            parts.append(say("whole", o.lang, video=_video_line(state, o.moment.video), span=_span(o.moment)))
        if o.why:
            parts.append(o.why)
        parts += o.evidence[:3]
        return " ".join(parts)


_VIDEO_RE = re.compile(r"video\s*(\d+)", re.I)
_SPAN_RE = re.compile(r"(\d+(?:\.\d+)?)\s*s?\s*[-–~to ]+\s*(\d+(?:\.\d+)?)\s*s", re.I)


def parse_ivcr_answer(text: str) -> tuple[int | None, tuple[float, float] | None]:
    """The IVCR parsing rules: the first "video N" (1-based candidate) and the first "Xs-Ys" span."""
    v = _VIDEO_RE.search(text)
    s = _SPAN_RE.search(text)
    span = None
    if s:
        a, b = float(s.group(1)), float(s.group(2))
        span = (min(a, b), max(a, b))
    return (int(v.group(1)) if v else None), span


class LLMResponder:
    """Any causal LM loadable by transformers (a local folder: nothing is downloaded). The prompt
    carries the dialogue, the candidates and their evidence; the model's answer is returned as
    the reply, and `choose` can let it pick among the ten candidates."""

    def __init__(self, model_dir: str, max_new_tokens: int = 48, device: str = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).to(device).eval()
        self.max_new_tokens = max_new_tokens
        self.device = device

    def prompt(self, intent: str, state: SessionState, outcome: Outcome | dict) -> str:
        lines = ["You help a user find videos and moments. Answer like 'The given query happens in video N.' "
                 "or 'The given query happens Xs-Ys.'"]
        for t in state.turns[-4:]:
            lines.append(f"User: {t['user']}\nAssistant: {t['reply']}")
        for c in state.candidates:
            lines.append(f"video {state.candidate_number(c.video)}: {c.path} (score {c.score:.2f})")
        for e in Outcome.of(outcome).evidence:
            lines.append(f"evidence: {e}")
        lines.append(f"Intent: {intent}. Assistant:")
        return "\n".join(lines)

    def generate(self, prompt: str) -> str:
        import torch

        ids = self.tok(prompt, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id)
        return self.tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def respond(self, intent: str, state: SessionState, outcome: Outcome | dict) -> str:
        return self.generate(self.prompt(intent, state, outcome))

    def choose(self, state: SessionState, outcome: Outcome | dict) -> tuple[Candidate | None, tuple[float, float] | None, str]:
        """Let the model pick: its parsed "video N" (within the candidates) and "Xs-Ys"."""
        text = self.respond("choose", state, outcome)
        n, span = parse_ivcr_answer(text)
        numbered = state.numbered()
        picked = numbered[n - 1] if n and 1 <= n <= len(numbered) else -1
        chosen = next((c for c in state.candidates if c.video == picked), None)
        return chosen, span, text
