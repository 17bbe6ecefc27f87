"""Multi-turn scenarios from real annotations: ActivityNet Captions and Charades-STA give several
timed sentences per video; a scenario asks for the video with one sentence, then when another
happens. Here they check routing on real language (the latency benchmark replays them too)."""
from __future__ import annotations

import json

from ivcr_engine.dialogue.router import Intent, Router


def scenarios(shared_data, n=150):
    anet = json.loads((shared_data / "annotations" / "activitynet_captions" / "val.json").read_text())
    out = []
    for vid, item in list(anet.items())[:n]:
        s = [x.strip().rstrip(".") for x in item["sentences"]]
        if len(s) >= 2:
            out.append((vid, s[0], s[1], item["timestamps"][1]))
    for line in (shared_data / "annotations" / "charades_sta" / "charades_sta_test.txt").read_text().splitlines()[:n]:
        head, sentence = line.split("##")
        vid, a, b = head.split()
        out.append((vid, sentence.strip().rstrip("."), sentence.strip().rstrip("."), [float(a), float(b)]))
    return out


def test_real_sentences_route_as_find_then_when(shared_data):
    router = Router()
    found = when = 0
    cases = scenarios(shared_data)
    for _, first, second, _ in cases:
        r1 = router.route(f"Find the video where {first[0].lower() + first[1:]}")
        r2 = router.route(f"When does {second[0].lower() + second[1:]}?", has_candidates=True, has_selection=True)
        found += r1.intent == Intent.VIDEO_RETRIEVAL and len(r1.query) > 3
        when += r2.intent == Intent.MOMENT_RETRIEVAL and len(r2.query) > 3
    assert found == len(cases) and when == len(cases)


def test_bare_sentences_fall_back_by_context(shared_data):
    router = Router()
    cases = scenarios(shared_data, n=60)
    first = [router.route(c[1]) for c in cases]
    later = [router.route(c[2], has_candidates=True, has_selection=True) for c in cases]
    # A bare description is a search: for videos before anything is chosen, for a moment after.
    assert sum(r.intent == Intent.VIDEO_RETRIEVAL for r in first) >= 0.9 * len(cases)
    assert sum(r.intent == Intent.MOMENT_RETRIEVAL for r in later) >= 0.9 * len(cases)
    assert all(r.assumed for r in first if r.matched == "prototype")
