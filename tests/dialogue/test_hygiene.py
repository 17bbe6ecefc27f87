"""Dialogue hygiene: ordinals of any size reach the selection handler (which says how many
candidates there are), and control/escape characters never reach routing, state or the terminal."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ivcr_engine.dialogue import Engine, Intent, Router
from ivcr_engine.dialogue.router import clean_text, zh_number


@pytest.mark.parametrize("turn,ordinal", [
    ("the 99th one", 99), ("the 11th", 11), ("the 1000000000000000000000th one", 10**21), ("number 42", 42),
    ("video 123", 123), ("#7", 7), ("第99个", 99), ("第九十九个", 99), ("第一百零五个", 105), ("第十二个", 12),
    ("the second one", 2), ("第二个", 2), ("the last one", -1), ("the twelfth video", 12)])
def test_ordinals_of_any_size_are_selections(turn, ordinal):
    r = Router().route(turn, has_candidates=True)
    assert (r.intent, r.ordinal) == (Intent.SELECT, ordinal)


def test_chinese_numerals():
    assert [zh_number(s) for s in ("九", "十", "十二", "二十", "九十九", "一百零五", "两千三百", "一万零五", "42")] == \
           [9, 10, 12, 20, 99, 105, 2300, 10005, 42]


def test_control_and_escape_characters_are_stripped():
    assert clean_text("find a\x0bdog\x0con the \x1b[1;31mbeach\x1b[0m\x1b]0;pwned\x07 now\u202e\x00") == \
           "find a dog on the beach now"
    r = Router().route("find videos of a\x0cdog\x1b[2J", has_candidates=False)
    assert r.intent == Intent.VIDEO_RETRIEVAL and r.query == "a dog"


@pytest.fixture(scope="module")
def engine(shared_index):
    return Engine.open(shared_index[0])


def test_out_of_range_ordinals_reach_the_selection_handler(engine):
    s = engine.session()
    n = len(s.ask("find videos of a parrot").candidates)
    chosen = s.state.selected
    for turn in ("the 99th one", "第99个", "number 42", "the 1000000000000000000000th one"):
        r = s.ask(turn)
        assert r.intent == "selection", turn
        # a Chinese turn is answered in Chinese
        want = f"共有 {n} 个候选；请选 1-{n}。" if turn.startswith("第") else f"There are {n} candidates; pick 1-{n}."
        assert want in r.text, r.text
        assert s.state.selected == chosen  # nothing moved


def test_turns_are_stored_and_answered_without_control_characters(engine):
    s = engine.session()
    r = s.ask("find videos of a\x0bparrot\x1b[31m")
    assert r.intent == "video retrieval"
    assert s.state.turns[-1]["user"] == "find videos of a parrot"
    assert not any(ch in r.text for ch in "\x0b\x1b")


def test_a_script_line_with_control_characters_is_one_turn_and_prints_clean(shared_index, tmp_path):
    script = tmp_path / "turns.txt"
    script.write_text("find videos of a\x0bparrot\x0cplease \x1b[31mnow\x1b[0m\nthe 99th one\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "chat", "--index", str(shared_index[0]), "--script",
                          str(script), "--save", str(tmp_path / "s.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("> ") == 2  # two lines, two turns: \x0b and \x0c split nothing
    assert "> find videos of a parrot please now" in out.stdout
    assert "[selection] " in out.stdout and "There are " in out.stdout
    assert not any(ch in out.stdout for ch in "\x0b\x0c\x1b")
