"""Every turn type routes right, in English and in Chinese."""
from __future__ import annotations

import pytest

from ivcr_engine.models.registry import TEXT_MODELS
from ivcr_engine.dialogue.router import Intent, Router

CASES = [
    ("find videos of a dog running on a beach", Intent.VIDEO_RETRIEVAL, {"query": "a dog running on a beach"}),
    ("show me clips of a parrot", Intent.VIDEO_RETRIEVAL, {"query": "a parrot"}),
    ("找一些关于烹饪的视频", Intent.VIDEO_RETRIEVAL, {"query": "烹饪"}),
    ("when does he open the door?", Intent.MOMENT_RETRIEVAL, {"query": "he open the door"}),
    ("那个视频里他什么时候开门", Intent.MOMENT_RETRIEVAL, {}),
    ("the second one", Intent.SELECT, {"ordinal": 2}),
    ("video 3", Intent.SELECT, {"ordinal": 3}),
    ("第二个", Intent.SELECT, {"ordinal": 2}),
    ("第3个", Intent.SELECT, {"ordinal": 3}),
    ("最后一个", Intent.SELECT, {"ordinal": -1}),
    ("the one with the cockatoo", Intent.SELECT, {"query": "the cockatoo"}),
    ("only the ones at night", Intent.REFINE, {"query": "at night"}),
    ("只要晚上的", Intent.REFINE, {"query": "晚上的"}),
    ("the part after that", Intent.REFINE, {"direction": "after"}),
    ("earlier", Intent.REFINE, {"direction": "before"}),
    ("之后呢", Intent.REFINE, {"direction": "after"}),
    ("not this one", Intent.NEGATIVE, {"scope": "one"}),
    ("不是这个", Intent.NEGATIVE, {"scope": "one"}),
    ("none of these", Intent.NEGATIVE, {"scope": "all"}),
    ("都不是", Intent.NEGATIVE, {"scope": "all"}),
    ("find something like this scene", Intent.ANALOGOUS, {}),
    ("类似的视频", Intent.ANALOGOUS, {}),
    ("show me the whole video this clip comes from", Intent.WHOLE_VIDEO, {}),
    ("给我看整个视频", Intent.WHOLE_VIDEO, {}),
    ("hello", Intent.CHAT, {}),
    ("谢谢", Intent.CHAT, {}),
    ("help", Intent.HELP, {}),
    ("你能做什么", Intent.HELP, {}),
]


@pytest.mark.parametrize("text,intent,slots", CASES, ids=[c[0] for c in CASES])
def test_patterns(text, intent, slots):
    r = Router().route(text)
    assert r.intent == intent
    for k, v in slots.items():
        assert getattr(r, k) == v


def test_unmatched_turns_fall_back_and_say_what_was_assumed():
    router = Router()  # no encoder: the fallback is by state alone
    r = router.route("a red car on a bridge", has_candidates=False, has_selection=False)
    assert r.intent == Intent.VIDEO_RETRIEVAL and r.assumed
    r = router.route("a red car on a bridge", has_candidates=True, has_selection=True)
    assert r.intent == Intent.MOMENT_RETRIEVAL and "assumed" in r.assumed


class CalibratedQueries:
    """Sentence vectors as the query encoder hands them to the router: unit vectors, and the text
    model's chance similarity."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.chance = encoder.chance

    def unit(self, texts):
        return self.encoder.encode(texts, "query")


@pytest.mark.parametrize("text_model", TEXT_MODELS)
def test_prototypes_decide_unmatched_turns(text_model):
    from ivcr_engine.models import TextEncoder, prepare_models

    prepare_models()
    router = Router(CalibratedQueries(TextEncoder(text_model)))
    r = router.route("the moment the crowd begins to cheer loudly", has_candidates=True, has_selection=True)
    assert r.intent == Intent.MOMENT_RETRIEVAL and r.matched == "prototype"
    r = router.route("a man is playing the guitar on a stage")
    assert r.intent == Intent.VIDEO_RETRIEVAL
    # moment-like turn with nothing chosen yet: look for the video first
    r = router.route("the moment the crowd begins to cheer loudly")
    assert r.intent == Intent.VIDEO_RETRIEVAL and r.assumed


def test_greetings_are_chat_and_what_someone_does_is_a_moment_under_the_multilingual_model():
    """With a video selected, "hello, who are you?" is small talk, not a moment query, and "what
    is that person doing" (in Chinese too) asks about the moment, not for help."""
    from ivcr_engine.models import TextEncoder, prepare_models

    prepare_models()
    router = Router(CalibratedQueries(TextEncoder("text_me5_small")))
    for text in ("hello, who are you?", "你好，你是谁？"):
        assert router.route(text, has_candidates=True, has_selection=True).intent == Intent.CHAT, text
    for text in ("what is that person doing", "那个人在做什么"):
        assert router.route(text, has_candidates=True, has_selection=True).intent == Intent.MOMENT_RETRIEVAL, text


@pytest.mark.parametrize("text", ["how do I make the tomato sauce", "what happens when the door opens?",
                                  "why does the crowd cheer", "where is the cleanroom?", "怎么做番茄酱？",
                                  "门打开的时候发生了什么", "为什么大家在欢呼"])
def test_a_content_question_about_the_chosen_video_looks_inside_it(text):
    """Dialogue context (issue 23): with a video chosen, a question about its content is a moment
    turn in that video, and the reply says what was assumed; with none chosen it is not."""
    router = Router()
    r = router.route(text, has_candidates=True, has_selection=True)
    assert r.intent == Intent.MOMENT_RETRIEVAL and r.matched == "context" and r.query == text.strip()
    assert r.assumed in ("a question about the video on show; looked inside it", "关于当前视频的问题；在这个视频里找")
    assert router.route(text, has_candidates=False, has_selection=False).matched != "context"


@pytest.mark.parametrize("text", ["how about other videos of cooking", "what other clips show a parrot",
                                  "which videos have a dog", "还有其他做饭的视频吗", "有没有别的", "who are you?",
                                  "what is your name", "你是谁？", "你叫什么名字"])
def test_a_question_for_other_videos_or_to_the_assistant_is_not_asked_of_the_chosen_one(text):
    assert Router().route(text, has_candidates=True, has_selection=True).matched != "context"
