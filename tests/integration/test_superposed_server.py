"""The autocomplete HTTP server on a tiny model: API, limits, malformed requests (4xx)."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
from tests.fixtures.superposed import serve_in_thread

from terse.superposed.server import ServerLimits


@pytest.fixture(scope="module")
def server():
    limits = ServerLimits(max_body_bytes=2048, max_prompt_chars=40, max_pending=2, queue_timeout=1.0)
    with serve_in_thread("llama", limits) as srv:
        yield srv


def request(server, method, path, body=None, headers=None, raw=None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, (json.loads(payload) if "json" in ctype else payload.decode())


def test_page_and_drafts(server):
    status, page = request(server, "GET", "/")
    assert status == 200 and "/api/drafts" in page and "AbortController" in page
    status, body = request(server, "POST", "/api/drafts", {"prompt": "Hello the", "num_drafts": 4, "max_new_tokens": 5})
    assert status == 200, body
    assert len(body["drafts"]) == 4 and len({d["text"] for d in body["drafts"]}) == 4
    assert all(len(d["text"]) <= 5 for d in body["drafts"])  # one character per token; special tokens decode to ""
    assert body["lm_forwards"] == 5  # one pass: one forward per new token
    status, paper = request(server, "POST", "/api/drafts", {"prompt": "Hello the", "num_drafts": 4, "max_new_tokens": 5,
                                                            "preset": "paper"})
    assert status == 200 and len(paper["drafts"]) == 4
    status, body = request(server, "GET", "/api/health")
    assert status == 200 and body["served"] >= 1


@pytest.mark.parametrize("raw, status, message", [
    (b"not json", 400, "JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"prompt": 5}', 400, "'prompt' must be a string"),
    (b'{"prompt": "hi", "num_drafts": 0}', 400, "num_drafts"),
    (b'{"prompt": "hi", "num_drafts": 99}', 400, "num_drafts"),
    (b'{"prompt": "hi", "num_drafts": true}', 400, "num_drafts"),
    (b'{"prompt": "hi", "max_new_tokens": "10"}', 400, "max_new_tokens"),
    (b'{"prompt": "hi", "evil": 1}', 400, "unknown fields"),
    (b'{"prompt": "hi", "seq": -1}', 400, "seq"),
    (b'{"prompt": "hi", "preset": "fast"}', 400, "'preset' must be one of"),
    (b'{"prompt": ""}', 400, "empty"),
    (b'{"prompt": "   "}', 400, "empty"),
    (b'{"prompt": "\\u00ff\\u00fe"}', 200, None),  # outside the tiny vocabulary: [UNK] tokens, still fine
    (json.dumps({"prompt": "x" * 41}).encode(), 413, "limit is 40"),
    (b"\xff\xfe", 400, "UTF-8"),
])
def test_malformed_requests_get_4xx(server, raw, status, message):
    got, body = request(server, "POST", "/api/drafts", raw=raw)
    assert got == status, body
    if message:
        assert message in body["error"]


def test_http_level_errors(server):
    assert request(server, "GET", "/nope")[0] == 404
    assert request(server, "POST", "/nope", {"prompt": "x"})[0] == 404
    assert request(server, "GET", "/api/drafts")[0] == 405
    assert request(server, "DELETE", "/api/drafts")[0] == 405
    assert request(server, "POST", "/api/drafts", raw=b"{}", headers={"Content-Type": "text/plain"})[0] == 415
    status, body = request(server, "POST", "/api/drafts", raw=b"x" * 3000)
    assert status == 413 and "limit" in body["error"]


def test_missing_or_bad_content_length(server):
    host, port = server.server_address[:2]
    for head in (b"POST /api/drafts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n",
                 b"POST /api/drafts HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 b"POST /api/drafts HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(head)
            reply = sock.recv(4096).decode()
        assert reply.split()[1] in ("400", "411"), reply


def test_busy_and_superseded(server):
    service = server.RequestHandlerClass.service
    service._model_lock.acquire()  # the model is busy with a long request
    try:
        results = {}

        def call(name, body):
            results[name] = request(server, "POST", "/api/drafts", body)

        old = threading.Thread(target=call, args=("old", {"prompt": "ab", "client": "c1", "seq": 1}))
        old.start()
        while service._pending < 1:
            pass
        new = threading.Thread(target=call, args=("new", {"prompt": "abc", "client": "c1", "seq": 2}))
        new.start()
        while service._pending < 2:
            pass
        # Both waiting slots are taken: a third request is turned away at once.
        assert request(server, "POST", "/api/drafts", {"prompt": "zz"})[0] == 503
    finally:
        service._model_lock.release()
    old.join(10)
    new.join(10)
    assert results["old"][0] == 409  # superseded by seq 2 while it waited
    assert results["new"][0] == 200 and results["new"][1]["seq"] == 2


def test_prompt_too_long_for_the_model_is_400():
    with serve_in_thread("gpt2", ServerLimits(max_prompt_chars=500)) as srv:
        status, body = request(srv, "POST", "/api/drafts", {"prompt": "y" * 100})
        assert status == 400 and "context" in body["error"]
