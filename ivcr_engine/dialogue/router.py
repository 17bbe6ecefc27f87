"""Intent routing for a dialogue turn: explicit patterns first (English and Chinese), then
similarity to intent prototypes in the text encoder's space; an ambiguous turn falls back to the
most plausible intent and says what was assumed."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..models.text import calibrated
from .messages import intent_name, language_of, say


class Intent(str, Enum):
    VIDEO_RETRIEVAL = "video retrieval"
    MOMENT_RETRIEVAL = "moment retrieval"
    SELECT = "selection"
    REFINE = "refinement"
    NEGATIVE = "negative feedback"
    ANALOGOUS = "analogous search"
    WHOLE_VIDEO = "whole video"
    CHAT = "chit-chat"
    HELP = "help"


@dataclass
class Routed:
    intent: Intent
    query: str = ""                 # the content words left for searching
    ordinal: int | None = None      # 1-based candidate number for selections
    direction: str | None = None    # "after" / "before" for temporal refinements
    scope: str | None = None        # "one" / "all" for negative feedback
    confidence: float = 1.0
    assumed: str | None = None      # what the router assumed when the turn was ambiguous
    matched: str = "pattern"        # "pattern", "context" (a question about the chosen video) or "prototype"


_ORDINALS_EN = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
                "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "twentieth": 20, "last": -1}
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_ZH_NUMBER = "[零〇一二两三四五六七八九十百千万]+"

# Terminal escape sequences (CSI/OSC/other ESC forms), then any other control character and the
# bidirectional overrides that reorder what a terminal shows.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def strip_controls(text: str) -> str:
    """``text`` without escape sequences and control characters (each control becomes a space, so
    words do not run together): safe to print, layout spaces kept."""
    return _CONTROLS.sub(" ", _ESCAPES.sub("", text))


def clean_text(text: str) -> str:
    """A turn as routed and stored: ``strip_controls``, runs of spaces squeezed, ends trimmed."""
    return re.sub(r" {2,}", " ", strip_controls(text)).strip()


def zh_number(s: str) -> int:
    """A Chinese numeral ("九十九", "十二", "一百零五", "两千") or digits as an int."""
    if s.isdigit():
        return int(s)
    total, section, digit = 0, 0, 0
    for ch in s:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch == "万":
            total, section, digit = (total + section + digit) * 10_000, 0, 0
        else:
            section += (digit or 1) * _ZH_UNITS[ch]
            digit = 0
    return total + section + digit

# Patterns are tried in order; the first match decides. Each returns a Routed.
_P = re.compile


def _strip(text: str, pattern: str) -> str:
    return re.sub(pattern, " ", text, flags=re.I).strip(" ?.!,;:，。？！")


def _pattern_route(text: str, lang: str) -> Routed | None:
    t = text.strip()
    low = t.lower()
    if not t:
        return Routed(Intent.HELP, assumed=say("assumed_empty", lang))
    if re.fullmatch(r"(help|\?|what can you do\??|how does this work\??|帮助|你能做什么[？?]?)", low):
        return Routed(Intent.HELP)
    if re.fullmatch(r"(hi|hello|hey|thanks|thank you|thx|good (morning|evening)|bye|ok(ay)?|cool|great|你好|谢谢|再见|好的)[!. ]*", low):
        return Routed(Intent.CHAT)
    # short-to-long
    if re.search(r"\b(whole|entire|full|complete) (video|clip|thing)\b|整个视频|完整(的)?视频|全部视频", low):
        return Routed(Intent.WHOLE_VIDEO)
    # negative feedback
    if re.search(r"\b(none of (these|them|those)|all wrong|nothing (here|matches))\b|都不是|都不对|一个都不", low):
        return Routed(Intent.NEGATIVE, scope="all")
    if re.search(r"\b(not (this|that|it)( one)?|wrong (one|video)|no,? not)\b|不是这个|不是那个|不对", low):
        return Routed(Intent.NEGATIVE, scope="one")
    # analogous
    if re.search(r"\b(something|anything|more|others?|videos?|clips?|scenes?) (like|similar to) (this|that|it)\b|\bsimilar (ones|scenes?|clips?|videos?)\b|类似|相似|差不多的", low):
        return Routed(Intent.ANALOGOUS)
    # selection by number or reference
    # ordinals of any size reach the selection handler, which says when there are fewer candidates
    m = re.search(r"(?:\b(?:video|clip|number|no\.?)|#)\s*(\d+)\b", low)
    if m and not re.search(r"\bwhen\b", low):
        return Routed(Intent.SELECT, ordinal=int(m.group(1)))
    m = re.search(r"\bthe (" + "|".join(_ORDINALS_EN) + r"|\d+(?:st|nd|rd|th))\b(?: one| video| clip)?", low)
    if m and len(low.split()) <= 6:
        g = m.group(1)
        return Routed(Intent.SELECT, ordinal=_ORDINALS_EN[g] if g in _ORDINALS_EN else int(g[:-2]))
    m = re.search(r"第\s*(" + _ZH_NUMBER + r"|\d+)\s*[个條条部段]", t)
    if m:
        return Routed(Intent.SELECT, ordinal=zh_number(m.group(1)))
    if re.search(r"最后一个", t):
        return Routed(Intent.SELECT, ordinal=-1)
    m = re.match(r"^(?:i mean |i want |pick |choose |select |open )?the one (?:with|where|that has|showing|about) (.+)$", low)
    if m:
        return Routed(Intent.SELECT, query=m.group(1).strip(" ?.!"))
    m = re.match(r"^有(.+)的那个$", t)
    if m:
        return Routed(Intent.SELECT, query=m.group(1))
    # temporal refinement relative to the last moment
    if re.search(r"\b(after that|afterwards|later( on)?|the part after|what happens next|next part)\b|之后|后面|后来", low):
        return Routed(Intent.REFINE, direction="after", query=_strip(low, r"\b(show me |the part |after that|afterwards|later( on)?|what happens next|next part)\b"))
    if re.search(r"\b(earlier|before that|the part before|previously)\b|之前|前面|更早", low):
        return Routed(Intent.REFINE, direction="before", query=_strip(low, r"\b(show me |the part |earlier( than that)?|before that|previously)\b"))
    # content refinement of the candidate list
    m = re.match(r"^(?:(?:the )?same|this|that|like (?:this|that))(?: one)?[\s,]*but (.+)$", low) \
        or re.match(r"^(?:only|just) (?:the ones? |those |videos? )?(.+)$", low)
    if m:
        return Routed(Intent.REFINE, query=m.group(1).strip(" ?.!"))
    m = re.match(r"^(?:这个|一样|同样)[，,\s]*(?:但是|不过)(.+)$", t) or re.match(r"^只要(.+)$", t)
    if m:
        return Routed(Intent.REFINE, query=m.group(1))
    # moment retrieval
    if re.search(r"^(when|at what (time|point)|what time|where in the video|which part|find the (moment|part|scene)|show me (the moment|when))\b", low) \
            or re.search(r"什么时候|哪一段|几秒|哪个时间|何时", t):
        q = _strip(low, r"^(when (does|do|did|is|are|was|were)|when|at what (time|point) (does|do|is)?|what time (does|do)?|where in the video (does|do|is)?|which part (shows|has)?|find the (moment|part|scene) (when|where)?|show me (the moment|when))\b")
        q = re.sub(r"那个视频里|这个视频里|什么时候|哪一段|几秒|何时", " ", q).strip()
        return Routed(Intent.MOMENT_RETRIEVAL, query=q or t)
    # video retrieval
    m = re.match(r"^(?:please )?(?:find|search( for)?|show( me)?|look for|get( me)?|i want( to see)?|are there|any)\s+(?:me\s+)?(?:some |a |an |the )?(?:videos?|clips?|footage|movies?)?\s*(?:of|about|with|where|showing|that show)?\s*(.+)$", low)
    if m:
        return Routed(Intent.VIDEO_RETRIEVAL, query=m.group(m.lastindex).strip(" ?.!"))
    m = re.match(r"^(?:找|搜索|我想看|给我看|有没有)(?:一些|一个)?(?:视频)?(?:关于)?(.+?)(?:的视频)?[？?。]?$", t)
    if m:
        return Routed(Intent.VIDEO_RETRIEVAL, query=m.group(1))
    return None


# What a turn that comes with a picture says about the picture itself ("like this picture",
# "这张图"), and the words that only lead into the search ("find", "but", "videos of"): what is
# left describes what the picture search should add ("this, but at night" -> "at night").
_PICTURE_REFS_EN = re.compile(
    r"\b(?:(?:something|anything|more|others?)\s+)?(?:(?:looks?|looking) like|like|similar to|resembling|same as|as in)\s+(?:this|that|it|the|my|these)"
    r"(?:\s+(?:picture|image|photo|photograph|screenshot|pic|shot|frame|one|scene))?\b"
    r"|\b(?:this|that|the|my|attached|these)\s+(?:picture|image|photo|photograph|screenshot|pic|shot|frame)s?\b", re.I)
_LEAD_EN = re.compile(
    r"^(?:(?:please|find|search(?: for)?|show(?: me)?|look for|get(?: me)?|give me|i want|any|are there|"
    r"this|that|it|same|but|and|only|just|also|now|here|is|some|a|an|the)\b[\s,.;:!?-]*)+", re.I)
_KIND_EN = re.compile(r"^(?:videos?|clips?|moments?|scenes?|footage|shots?|ones?|parts?)\b\s*"
                      r"(?:(?:of|about|with|where|showing|that show|in which)\b\s*)?", re.I)
_PICTURE_REFS_ZH = re.compile(r"(?:和|跟|与|像)?(?:这张|这幅|这个|该)?(?:图片|照片|图|画面|截图)(?:里|中)?"
                              r"(?:类似|相似|一样|差不多)?的?|(?:和|跟|与)?(?:这个|这)(?:类似|相似|一样)的?")
_LEAD_ZH = re.compile(r"^(?:这个|这样|这些|请|找|搜索|给我看|我想看|有没有|像|类似|相似|但是|不过|可是|而且|要|是|，|,|、|\s)+")
_KIND_ZH = re.compile(r"(?:的)?(?:视频|片段|画面|场景|镜头)$")


def picture_words(text: str) -> str:
    """The content words of a turn that comes with a picture: its references to the picture and
    its search scaffolding removed ("find moments like this picture" -> "", "this, but at night"
    -> "at night", "像这张图，但是在晚上" -> "在晚上")."""
    t = clean_text(text)
    t = _PICTURE_REFS_ZH.sub(" ", _PICTURE_REFS_EN.sub(" ", t))
    t = re.sub(r"\s+", " ", t).strip(" ,.;:!?，。？！；：、")
    for _ in range(3):  # scaffolding can come in any order: "but also show me videos of ..."
        before = t
        t = _KIND_EN.sub("", _LEAD_EN.sub("", t)).strip(" ,.;:!?，。？！；：、")
        t = _KIND_ZH.sub("", _LEAD_ZH.sub("", t)).strip(" ,.;:!?，。？！；：、")
        if t == before:
            break
    return t


# A question about content ("how do I make the sauce", "what happens when the door opens"), and
# words that ask for other videos instead. With a video chosen, such a question is asked of it.
_CONTENT_QUESTION_EN = re.compile(r"^(how|what|why|who|where|which)\b", re.I)
_OTHER_VIDEOS_EN = re.compile(r"\b(videos?|clips?|footage|movies?|others?|another|else|different|more)\b", re.I)
_CONTENT_QUESTION_ZH = re.compile(r"怎么|如何|怎样|为什么|为何|什么|谁|哪里|哪儿")
_OTHER_VIDEOS_ZH = re.compile(r"视频|片子|别的|其他|其它|另一个|另外|更多")
# ... and questions to the assistant itself ("who are you", "what is your name"): small talk
_TO_THE_ASSISTANT = re.compile(r"\b(are you|your name|about you|you like)\b|你是|你叫|你好|你的名字|你喜欢", re.I)


def asks_about_the_video(text: str) -> bool:
    """Whether a turn is a content question that asks neither for other videos nor about the
    assistant."""
    t = text.strip()
    if _TO_THE_ASSISTANT.search(t):
        return False
    if _CONTENT_QUESTION_EN.search(t):
        return not _OTHER_VIDEOS_EN.search(t)
    return bool(_CONTENT_QUESTION_ZH.search(t)) and not _OTHER_VIDEOS_ZH.search(t)


# Prototype sentences per intent, embedded once; an unmatched turn goes to the nearest intent.
PROTOTYPES = {
    Intent.VIDEO_RETRIEVAL: ["find videos of a dog running on a beach", "I am looking for a video about cooking",
                             "a man playing guitar on stage"],
    Intent.MOMENT_RETRIEVAL: ["when does he open the door", "at which point does the car stop",
                              "the moment the crowd starts cheering", "what is the man doing there"],
    Intent.CHAT: ["how are you today", "that is very nice", "tell me a joke", "hello, who are you",
                  "what is your name"],  # English only: MiniLM would put any Chinese turn near a Chinese one
    Intent.HELP: ["what can you do", "how do I use this"],
}


@dataclass
class Router:
    """``route(text, has_candidates, has_selection)``: patterns, then prototypes."""

    # the sentence vectors of the index's text model: ``unit(texts)`` -> (B, d) unit vectors and
    # ``chance``, the cosine unrelated sentences reach under it (index/query_encoder.py, whose
    # cache keeps the prototypes' vectors); None: patterns only
    encoder: object = None

    def _prototypes(self) -> dict:
        if self.encoder is None:
            return {}
        out = {}
        for intent, sents in PROTOTYPES.items():
            v = np.asarray(self.encoder.unit(sents), np.float32)
            out[intent] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return out

    def route(self, text: str, has_candidates: bool = False, has_selection: bool = False,
              lang: str | None = None) -> Routed:
        """``lang``: the language what was assumed is said in (default: the turn's own)."""
        text = clean_text(text)
        lang = lang or language_of(text)
        r = _pattern_route(text, lang)
        if r is not None:
            return r
        if has_selection and asks_about_the_video(text):  # dialogue context: the video on show
            return Routed(Intent.MOMENT_RETRIEVAL, query=text.strip(), matched="context",
                          assumed=say("assumed_in_video", lang))
        protos = self._prototypes()
        if not protos:
            intent = Intent.MOMENT_RETRIEVAL if has_selection else Intent.VIDEO_RETRIEVAL
            return Routed(intent, query=text.strip(), confidence=0.0, matched="prototype",
                          assumed=say("assumed_no_pattern", lang, intent=intent_name(intent.value, lang)))
        q = np.asarray(self.encoder.unit([text]), np.float32)[0]
        # the thresholds below were set on MiniLM's cosines: calibrated() puts any text model's
        # on that scale, (cos - chance) / (1 - chance)
        chance = float(self.encoder.chance)
        scored = sorted(((float(calibrated(np.max(v @ q), chance)), i) for i, v in protos.items()), reverse=True)
        (best, intent), (second, _) = scored[0], scored[1]
        assumed = None
        if intent in (Intent.CHAT, Intent.HELP) and best < 0.45:
            # a content-bearing turn that matches nothing: search with it
            intent = Intent.MOMENT_RETRIEVAL if has_selection else Intent.VIDEO_RETRIEVAL
            assumed = say("assumed_read_as", lang, intent=intent_name(intent.value, lang))
        elif best - second < 0.05:
            assumed = say("assumed_ambiguous", lang, intent=intent_name(intent.value, lang))
        if intent == Intent.MOMENT_RETRIEVAL and not has_selection and not has_candidates:
            intent, assumed = Intent.VIDEO_RETRIEVAL, say("assumed_videos_first", lang)
        return Routed(intent, query=text.strip(), confidence=best, matched="prototype", assumed=assumed)
