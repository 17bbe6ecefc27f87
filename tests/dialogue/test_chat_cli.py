"""`ivcr chat`: the scripted transcript, and the interactive prompt driven through tmux."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid

import pytest


def test_scripted_chat_prints_the_transcript(shared_index, tmp_path):
    script = tmp_path / "turns.txt"
    script.write_text("# a comment\nfind videos of a parrot\nthe second one\nvideo 1\nwhen does it move?\n"
                      "show me the whole video\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "chat", "--index", str(shared_index[0]), "--script",
                          str(script), "--save", str(tmp_path / "s.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "> find videos of a parrot" in out.stdout and "a comment" not in out.stdout
    assert "[video retrieval] The intent is video retrieval. The given query happens in video 1." in out.stdout
    assert "* 1. cockatoo.mp4" in out.stdout
    assert "[moment retrieval] The intent is moment retrieval. The given query happens " in out.stdout
    assert "[whole video] Here is the whole video" in out.stdout
    assert len(json.loads((tmp_path / "s.json").read_text())["turns"]) == 5


def test_chat_on_a_missing_index_fails_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "chat", "--index", str(tmp_path / "none"),
                          "--script", "/dev/null"], capture_output=True, text=True)
    assert out.returncode != 0 and "no index" in out.stderr


def test_interactive_chat_in_tmux(shared_index):
    if not shutil.which("tmux"):
        pytest.skip("tmux is needed (make installs it)")
    name = f"ivcr-{uuid.uuid4().hex[:8]}"
    cmd = f"{sys.executable} -m ivcr_engine chat --index {shared_index[0]}"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50", cmd], check=True)
    try:
        def screen():
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", name, "-S", "-200"], capture_output=True,
                                  text=True).stdout

        def wait_for(text, timeout=60):
            end = time.time() + timeout
            while time.time() < end:
                if text in screen():
                    return
                time.sleep(0.2)
            raise AssertionError(f"{text!r} did not appear:\n{screen()}")

        wait_for("you>")  # capture-pane drops trailing spaces
        for turn, expect in [("find videos of a parrot", "cockatoo.mp4"), ("第二个", "video 2"),
                             ("when does it move?", "moment retrieval")]:
            subprocess.run(["tmux", "send-keys", "-t", name, turn, "Enter"], check=True)
            wait_for(expect)
        subprocess.run(["tmux", "send-keys", "-t", name, "quit", "Enter"], check=True)
        time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
