"""Evidence that supports the answer (issue 21, part 3): matching lines best first, confident
concepts, no timecodes or counters unless asked for; the index still gives every line."""
from __future__ import annotations

import math

import pytest

from ivcr_engine.dialogue import Engine
from ivcr_engine.dialogue.evidence import asked_for, confident_concepts, low_information, supporting_lines
from ivcr_engine.index.protocol import Evidence


@pytest.mark.parametrize("text", ["00:00:01.000", "135", "12:30", "2026-11-29", "  7 / 10 ", "#42", "1,024", "x", "",
                                  "3.5%"])
def test_timecodes_counters_and_lone_characters_carry_no_information(text):
    assert low_information(text)


@pytest.mark.parametrize("text", ["Welcome to the kitchen.", "NASA", "episode 12", "今天天气很好", "饺子", "Q3 2026"])
def test_words_do(text):
    assert not low_information(text)


def test_a_reading_the_query_asks_for_is_kept():
    assert asked_for("135", "what happens at frame 135") and asked_for("12", "Episode 12")
    assert not asked_for("135", "the tomatoes") and not asked_for("", "anything")


LINES = [("ocr", 0.0, 16.0, "00:00:01.000"), ("ocr", 8.0, 10.0, "135"),
         ("speech", 9.1, 12.3, "Now we add the tomatoes to the pan and stir."),
         ("ocr", 9.0, 12.0, "Chef's Table"), ("speech", 12.3, 14.0, "It smells great.")]


def test_matching_lines_come_best_first_and_the_rest_stay_out():
    ev = Evidence(lines=LINES, line_match=[0.5, 0.4, 0.35, -0.05, 0.1])
    assert [l[3] for l in supporting_lines(ev, "add the tomatoes")] == [
        "Now we add the tomatoes to the pan and stir.", "It smells great."]
    # unscored lines (no vector, or a channel the query does not search) are not claimed to match
    ev = Evidence(lines=LINES, line_match=[math.nan] * 4 + [0.2])
    assert [l[3] for l in supporting_lines(ev, "x")] == ["It smells great."]


def test_without_match_scores_every_informative_line_is_shown_in_time_order():
    ev = Evidence(lines=LINES)
    assert [l[3] for l in supporting_lines(ev)] == ["Now we add the tomatoes to the pan and stir.", "Chef's Table",
                                                    "It smells great."]
    assert [l[3] for l in supporting_lines(ev, "frame 135")][:2] == ["135", "Now we add the tomatoes to the pan and stir."]


def test_only_confident_concepts_are_shown():
    ev = Evidence(concepts=["african grey parrot 0.47, sulphur-crested cockatoo 0.05, quail 0.04", "other 0.9"])
    assert confident_concepts(ev) == "african grey parrot 0.47"
    assert confident_concepts(Evidence(concepts=["ring binder 0.08, website 0.04"])) == ""
    assert confident_concepts(Evidence(concepts=["stage 0.19, pan flute 0.17"])) == ""
    assert confident_concepts(Evidence()) == ""


def test_the_index_scores_each_line_against_the_query_and_keeps_every_line(shared_index):
    engine = Engine.open(shared_index[0])
    index = engine.index
    nasa = next(r for r in range(index.num_refs()) if index.video(r).path.endswith("nasa_13013.mp4"))
    everything = index.evidence(nasa, 0.0, 17.0)
    assert len(everything.lines) >= 4 and everything.line_match == []
    q = index.encode_queries(["one of the largest cleanrooms in the world"])
    scored = index.evidence(nasa, 0.0, 17.0, q)
    assert scored.lines == everything.lines and len(scored.line_match) == len(scored.lines)
    best = max(range(len(scored.lines)), key=lambda i: scored.line_match[i])
    assert "largest clean" in scored.lines[best][3] and scored.line_match[best] > 0  # speech or subtitle
    shown = supporting_lines(scored, "one of the largest cleanrooms in the world")
    assert "largest clean" in shown[0][3] and len(shown) < len(scored.lines)


def test_a_dialogue_reply_cites_the_matching_line_first(shared_index):
    session = Engine.open(shared_index[0]).session()
    r = session.ask("find the video where they say it is one of the largest cleanrooms in the world")
    assert r.evidence and "largest clean" in r.evidence[0]  # the speech line (Whisper: "clean rooms") or the subtitle
    assert not any(low_information(e.rsplit(":", 1)[-1].strip(' "“”')) for e in r.evidence)
