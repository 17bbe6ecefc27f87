"""Every sentence the dialogue says, in English and Chinese. A turn is answered in the language it
was written in; the machine-readable parts of an answer stay verbatim in both ("video N" and the
"Xs-Ys" span), so the IVCR-200K authors' parser reads either."""
from __future__ import annotations

import re

LANGUAGES = ("en", "zh")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")

MESSAGES: dict[str, dict[str, str]] = {
    "help": {
        "en": "I search the indexed videos. Try: 'find videos of a dog on a beach', then 'the second one', "
              "'when does he open the door?', 'earlier', 'not this one', 'something like this scene', "
              "'show me the whole video'. 中文也可以: '第二个', '什么时候开门'.",
        "zh": "我可以在已建索引的视频里查找。试试：'找一些狗在海滩上的视频'，然后 '第二个'、'他什么时候开门'、"
              "'更早一点'、'不是这个'、'类似的场景'、'看整个视频'。English works too: 'the second one'.",
    },
    "chat": {"en": "Happy to help. Tell me what you want to find in the videos, or ask 'help'.",
             "zh": "乐意帮忙。告诉我你想在视频里找什么，或者说 '帮助'。"},
    "video": {"en": "The intent is video retrieval. The given query happens in {video}.",
              "zh": "意图是视频检索。查询的内容出现在 {video}。"},
    "moment": {"en": "The intent is moment retrieval. The given query happens {span}.",
               "zh": "意图是片段检索。查询的内容出现在 {span}。"},
    "whole": {"en": "Here is the whole video ({video}): {span}.", "zh": "这是整个视频（{video}）：{span}。"},
    "nothing": {"en": "I found nothing that matches.", "zh": "没有找到匹配的内容。"},
    "no_match": {"en": "No{other} video matches '{query}'.", "zh": "没有{other}视频符合 '{query}'。"},
    "other": {"en": " other", "zh": "其他"},
    "need_query": {"en": "Tell me what the video should show.", "zh": "请告诉我视频里应该有什么。"},
    "need_moment_query": {"en": "What should happen in the moment?", "zh": "这个片段里应该发生什么？"},
    "no_moment_match": {"en": "Nothing {where} matches '{query}'.", "zh": "{where}没有符合 '{query}' 的内容。"},
    "in_video": {"en": "in this video", "zh": "这个视频里"},
    "after": {"en": "after", "zh": "之后"},
    "before": {"en": "before", "zh": "之前"},
    "no_list": {"en": "There is no list to choose from yet; ask for videos first.",
                "zh": "还没有可以选择的列表；请先找视频。"},
    "pick_range": {"en": "There are {n} candidates; pick 1-{n}.", "zh": "共有 {n} 个候选；请选 1-{n}。"},
    "none_shows": {"en": "None of the candidates shows '{query}'.", "zh": "候选视频里没有 '{query}'。"},
    "no_moment_yet": {"en": "There is no moment yet to look before or after.", "zh": "还没有片段，无法往前或往后找。"},
    "reranked": {"en": "Re-ranked for '{query}'.", "zh": "已按 '{query}' 重新排序。"},
    "noted": {"en": "Noted. What should I look for instead?", "zh": "明白了。那要找什么呢？"},
    "excluded": {"en": "Excluded what you rejected and searched again.", "zh": "已排除你否定的视频并重新搜索。"},
    "need_scene": {"en": "Show me a scene first, then ask for similar ones.", "zh": "请先找到一个场景，再找相似的。"},
    "no_similar": {"en": "No other video looks like this scene.", "zh": "没有其他视频和这个场景相似。"},
    "looks_like_picture": {"en": "It looks most like your picture at {moment}.",
                           "zh": "它和你的图片最相似的位置在 {moment}。"},
    "looks_like_scene": {"en": "It looks most like your scene at {moment}.", "zh": "它和你的场景最相似的位置在 {moment}。"},
    "which_video": {"en": "Which video? Find one first.", "zh": "哪个视频？请先找一个。"},
    "assumed": {"en": "(I assumed: {what}.)", "zh": "（我的理解：{what}。）"},
    "best_match": {"en": "Best match at {moment}: ", "zh": "最匹配的位置 {moment}："},
    "line": {"en": "{source} at {start:.1f}-{end:.1f}s: \"{text}\"", "zh": "{source} {start:.1f}-{end:.1f}s：“{text}”"},
    "looks_like": {"en": "looks like: {concepts}", "zh": "画面像：{concepts}"},
    # what the router assumed, for ambiguous turns
    "assumed_empty": {"en": "an empty turn: showing help", "zh": "空白的一轮：显示帮助"},
    "assumed_no_pattern": {"en": "no pattern matched; assumed {intent}", "zh": "没有匹配的句式；当作{intent}"},
    "assumed_read_as": {"en": "read as {intent}", "zh": "当作{intent}"},
    "assumed_ambiguous": {"en": "ambiguous turn; assumed {intent}", "zh": "意图不明确；当作{intent}"},
    "assumed_in_video": {"en": "a question about the video on show; looked inside it",
                         "zh": "关于当前视频的问题；在这个视频里找"},
    "assumed_videos_first": {"en": "no video chosen yet; searched for videos first", "zh": "还没选定视频；先搜索了视频"},
}
SOURCES = {"speech": {"en": "speech", "zh": "语音"}, "subtitle": {"en": "subtitle", "zh": "字幕"},
           "ocr": {"en": "on screen", "zh": "画面文字"}}
INTENTS_ZH = {"video retrieval": "视频检索", "moment retrieval": "片段检索", "selection": "选择",
              "refinement": "细化", "negative feedback": "否定反馈", "analogous search": "相似搜索",
              "whole video": "整个视频", "chit-chat": "闲聊", "help": "帮助"}


def language_of(text: str, default: str = "en") -> str:
    """"zh" when Chinese characters outnumber Latin letters, "en" when letters do, else ``default``
    (a turn of digits or punctuation keeps the conversation's language)."""
    zh, en = len(_CJK.findall(text)), len(_LATIN.findall(text))
    if zh == en == 0:
        return default
    return "zh" if zh * 2 >= en else "en"  # a Chinese character carries about a word


def say(key: str, lang: str, **params) -> str:
    """The message ``key`` in ``lang`` (English when there is no such language)."""
    texts = MESSAGES[key]
    return texts.get(lang, texts["en"]).format(**params)


def intent_name(intent: str, lang: str) -> str:
    return INTENTS_ZH.get(intent, intent) if lang == "zh" else intent


def source_name(source: str, lang: str) -> str:
    return SOURCES.get(source, {}).get(lang, source)
