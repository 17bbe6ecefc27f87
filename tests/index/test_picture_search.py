"""Search by picture (issue 22, part 4): a frame of a shared video, saved as a user would save it
(JPEG, PNG, WebP, another size), finds that video first and a moment around the frame; bad
pictures get a clear InvalidArgument before anything is decoded; the dialogue searches by a
picture, keeps it for the turns that follow ("this, but at night", "not this one") and through
its JSON, and a bad picture changes nothing."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from ivcr_engine.decode import Timestamps, decode_frames
from ivcr_engine.dialogue import Engine
from ivcr_engine.errors import InvalidArgument
from ivcr_engine.index import Index
from ivcr_engine.index.image_query import MAX_BYTES, picture_query, read_image

Image = pytest.importorskip("PIL.Image")

# (video, second): shots that stay on screen a while, so the clip around the second is the one
FRAMES = [("cockatoo.mp4", 3.0), ("dog_walk.mp4", 1.0), ("nasa_13013.mp4", 6.0), ("bigbuckbunny.mp4", 3.0),
          ("bikes.mp4", 5.0)]


def frame(shared_data, name: str, t: float, size: int = 320) -> np.ndarray:
    return decode_frames(shared_data / "videos" / name, Timestamps([t]), size=size).frames[0]


def encoded(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def index(shared_index):
    return Index.open(shared_index[0])


@pytest.mark.parametrize("name, t", FRAMES)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_frame_finds_its_video_and_moment(index, shared_data, name, t, fmt):
    picture = encoded(frame(shared_data, name, t, size=320 if fmt != "PNG" else 500), fmt)
    rows, weights = picture_query(index, "", picture)
    assert set(rows) == {"visual"} and rows["visual"].shape == (1, index.channels["visual"].shape[1])
    hits = index.search(rows, k=3, weights=weights)
    assert hits[0].path.endswith(name), [h.path for h in hits]
    assert hits[0].start - index.clip_seconds <= t <= hits[0].end + index.clip_seconds, (hits[0].start, hits[0].end)
    assert hits[0].score > hits[1].score


def test_pixels_and_bytes_agree(index, shared_data):
    rgb = frame(shared_data, "cockatoo.mp4", 3.0)
    a = index.encode_image(rgb)["visual"]
    b = index.encode_image(encoded(rgb, "PNG"))["visual"]  # lossless: the same pixels
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-3


def test_words_beside_a_picture_reorder_what_follows_it(index, shared_data):
    """The picture leads (its own video first); the words decide among the rest."""
    picture = encoded(frame(shared_data, "cockatoo.mp4", 3.0), "JPEG")
    alone = index.search(*picture_query(index, "", picture)[:1], k=8, weights=picture_query(index, "", picture)[1])
    assert alone[0].path.endswith("cockatoo.mp4")
    for words, second in [("a dog", "dog_walk.mp4"), ("bicycles", "bikes.mp4")]:
        rows, weights = picture_query(index, words, picture)
        both = index.search(rows, k=8, weights=weights)
        assert both[0].path.endswith("cockatoo.mp4") and both[1].path.endswith(second), [h.path for h in both]
        assert not alone[1].path.endswith(second)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h (a few bytes that would decode to gigabytes)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = zlib.compress(b"\0" * 64)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat


def test_bad_pictures_are_refused_clearly(index, shared_data):
    jpeg = encoded(frame(shared_data, "dog_walk.mp4", 1.0), "JPEG")
    gif = encoded(frame(shared_data, "dog_walk.mp4", 1.0), "GIF")
    cases = [
        (b"", "empty"),
        (b"just some text, not a picture", "not a JPEG, PNG or WebP"),
        (gif, "not a JPEG, PNG or WebP"),
        (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        (b"\xff\xd8\xff" + b"\0" * 100, "not a readable JPEG"),
        (png_header_only(100_000, 100_000), "megapixels"),
        (png_header_only(8000, 8000), "8000x8000"),
        (png_header_only(9000, 10), "9000x10"),
        (b"\xff\xd8\xff" + b"\0" * MAX_BYTES, "at most"),
    ]
    for data, says in cases:
        with pytest.raises(InvalidArgument, match=says):
            read_image(data)
    with pytest.raises(InvalidArgument, match="uint8"):
        index.encode_image(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InvalidArgument):
        index.encode_image("/etc/passwd")


def test_the_dialogue_searches_by_picture_and_keeps_it(shared_index, shared_data):
    engine = Engine.open(shared_index[0], candidate_moments=True)
    s = engine.session()
    picture = encoded(frame(shared_data, "cockatoo.mp4", 3.0), "JPEG")
    r = s.ask("find moments like this picture", image=picture)
    top = engine.index.video(r.video).path
    assert top.endswith("cockatoo.mp4") and r.kind == "video" and r.moment is not None
    assert r.moment.start - 2 <= 3.0 <= r.moment.end + 2 and "picture" in r.text
    assert len(r.candidate_moments) == len(r.candidates) and s.state.image is not None and s.state.query == ""
    assert s.state.turns[-1]["picture"] is True
    # a refinement in words keeps the picture: its own video stays first
    r = s.ask("this, but with a dog")
    assert r.intent == "refinement" and engine.index.video(r.video).path.endswith("cockatoo.mp4")
    assert s.state.query == "with a dog"
    # "not this one": the next best for the picture and its words
    r = s.ask("not this one")
    assert engine.index.video(r.video).path.endswith("dog_walk.mp4")
    # the picture survives the session's JSON (how a server stores it)
    again = type(s).from_json(engine, s.to_json())
    assert again.state.image == s.state.image
    # a bad picture fails the turn and changes nothing
    before = s.to_json()
    with pytest.raises(InvalidArgument):
        s.ask("like this", image=b"GIF89a....")
    assert s.to_json() == before
    # a new search in words drops the picture
    s.ask("find videos of a dog")
    assert s.state.image is None
    # Chinese: the picture's words are what is left of the turn
    r = s.ask("像这张图，但是有鸟", image=picture)
    assert s.state.query == "有鸟" and r.video is not None
