"""Sessions over the shared-video index: each intent's effect on the state, state carried across
turns, JSON round trips, replies in the IVCR format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivcr_engine.dialogue import Engine, Session


@pytest.fixture(scope="module")
def engine(shared_index):
    return Engine.open(shared_index[0])


def name(engine, video):
    return Path(engine.index.videos[video]["path"]).name


def test_find_select_moment_and_whole_video(engine):
    s = engine.session()
    r = s.ask("find videos of a parrot")
    assert r.intent == "video retrieval" and name(engine, r.video) == "cockatoo.mp4"
    assert r.text.startswith("The intent is video retrieval. The given query happens in video 1.")
    assert 1 < len(r.candidates) <= 10
    second = r.candidates[1].video
    r = s.ask("the second one")
    assert r.intent == "selection" and r.video == second and "video 2" in r.text
    r = s.ask("第一个")
    assert r.video == s.state.candidates[0].video
    r = s.ask("show me the whole video")
    assert r.moment.start == 0.0 and r.moment.end == pytest.approx(14.0)
    assert set(r.timings) >= {"total", "respond"} and all(v >= 0 for v in r.timings.values())


def test_moment_retrieval_uses_subtitles_and_temporal_refinements(engine):
    s = engine.session()
    s.ask("find videos about a space telescope")
    assert name(engine, s.state.selected) == "nasa_13013.mp4"
    r = s.ask("when do they mention the largest cleanrooms in the world?")
    assert r.intent == "moment retrieval"
    assert r.moment.start < 8.35 and r.moment.end > 4.26
    assert r.text.startswith("The intent is moment retrieval. The given query happens ")
    assert any("cleanrooms" in e for e in r.evidence)
    first = r.moment
    r = s.ask("the part after that")
    assert r.moment is not None and r.moment.start >= first.end - 1e-6
    after = r.moment
    r = s.ask("earlier")
    assert r.moment is not None and r.moment.end <= after.start + 1e-6


def test_refinement_adds_to_the_query_and_negative_feedback_excludes(engine):
    s = engine.session()
    s.ask("find videos of animals")
    s.ask("only the ones with a bird")
    assert s.state.queries == ["animals", "with a bird"] and "animals" in s.state.query
    top = s.state.selected
    r = s.ask("not this one")
    assert top in s.state.excluded and r.video != top
    assert all(c.video != top for c in r.candidates)
    shown = [c.video for c in s.state.candidates]
    r = s.ask("none of these")
    assert set(shown) <= set(s.state.excluded)
    assert all(c.video not in shown for c in r.candidates)


def test_chinese_turns(engine):
    s = engine.session()
    s.ask("find videos of a parrot")
    r = s.ask("第二个")
    rejected = s.state.candidates[1].video
    assert r.video == rejected
    r = s.ask("不是这个")
    assert r.intent == "negative feedback" and s.state.excluded == [rejected] and r.video != rejected
    r = s.ask("给我看整个视频")
    assert r.intent == "whole video" and r.moment.start == 0.0


def test_analogous_search_queries_by_the_current_scene(engine):
    s = engine.session()
    s.ask("find videos of people riding bicycles")
    s.ask("when do the cyclists pass by?")
    current = s.state.selected
    r = s.ask("find something like this scene")
    assert r.intent == "analogous search"
    assert r.video != current and all(c.video != current for c in r.candidates)
    assert r.moment is not None and r.moment.video == r.video


def test_chat_and_help_leave_the_state_alone(engine):
    s = engine.session()
    s.ask("find videos of a dog")
    before = s.state.to_dict()
    assert "find" in s.ask("help").text.lower()
    s.ask("thanks")
    after = s.state.to_dict()
    after.pop("turns"), before.pop("turns")
    assert after == before


def test_sessions_round_trip_through_json_and_continue(engine):
    s = engine.session()
    s.ask("find videos of a parrot")
    s.ask("the second one")
    s.ask("when does it move?")
    text = s.to_json()
    restored = Session.from_json(engine, text)
    assert restored.state.to_dict() == s.state.to_dict()
    assert json.loads(text)["moment"]["video"] == s.state.moment.video
    a, b = s.ask("earlier"), restored.ask("earlier")
    assert (a.moment, a.text) == (b.moment, b.text)


def test_turns_without_context_are_answered_not_crashed(engine):
    s = engine.session()
    assert "no list" in s.ask("the second one").text
    assert "no moment" in s.ask("earlier").text.lower()
    assert "first" in s.ask("find something like this scene").text.lower()
    assert s.ask("").intent == "help"
    with pytest.raises(TypeError):
        s.ask(None)
