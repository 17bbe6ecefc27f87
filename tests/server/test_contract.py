"""The API's contract (issue 22, part 1): schemathesis, the real tool, generates requests from the
served /openapi.json of a real `ivcr serve` on loopback (every operation, its examples, coverage
cases, random bodies and session scenarios along the published links) and holds every response
to the spec: no server error, every body as documented. /docs and /redoc come from the package."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("schemathesis")

CHECKS = "not_a_server_error,response_schema_conformance"
BODIES = {("post", "/v1/sessions/{sid}/turns"), ("post", "/v1/search"), ("post", "/v1/chat/completions")}


def test_the_served_spec_holds_for_every_generated_request(shared_index, serve_process, tmp_path):
    server = serve_process(shared_index[0])
    st = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run([str(st), "run", f"{server.url}/openapi.json", "--checks", CHECKS, "--max-examples", "10",
                          "--seed", "1", "--generation-database", "none", "--workers", "1", "--no-color",
                          "--request-timeout", "30"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=420)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m and int(m.group(1)) == int(m.group(2)) >= 300, out[-3000:]
    assert "13 selected / 13 total" in out and "failed" not in out.split("SUMMARY")[-1]


def test_every_body_is_described_and_the_docs_need_no_cdn(shared_index, serve_process):
    server = serve_process(shared_index[0])
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if (method, path) in BODIES:
                assert "$ref" in str(op["requestBody"]["content"]["application/json"]["schema"]), (method, path)
            ok = op["responses"].get("200") or op["responses"].get("201")
            assert ok and ok.get("content"), (method, path)
            assert "422" not in op["responses"], (method, path)  # refused bodies are 400s
    assert sum((m, p) in BODIES for p, item in spec["paths"].items() for m in item) == len(BODIES)
    turn = spec["paths"]["/v1/sessions/{sid}/turns"]["post"]
    assert {"400", "404", "413"} <= set(turn["responses"])
    for page in ("/docs", "/redoc"):
        html = httpx.get(server.url + page).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)""", html) + re.findall(r"""url: ?["']([^"']+)""", html)
        assert assets and all(a.startswith("/") for a in assets), assets  # nothing from another host
        for a in assets:
            assert httpx.get(server.url + a).status_code == 200, a
