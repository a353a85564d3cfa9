"""Local autocomplete server: a page where typing shows k Superposed Decoding drafts live.

Standard library only (``http.server``). One model is shared by all requests, so decoding
is serialised by a lock; the server bounds what a request may ask for:

* body size (``max_body_bytes``, else 413), prompt length (``max_prompt_chars``, else 413),
  drafts and new tokens per request (else 400);
* concurrency: at most ``max_pending`` requests wait for the model (else 503 + Retry-After),
  and a request that waited longer than ``queue_timeout`` seconds gets 503;
* cancellation: requests carry a ``client`` id and a increasing ``seq``; a queued request
  that a newer one from the same client has superseded is answered 409 without decoding
  (the page also aborts the stale fetch). The page debounces keystrokes.

Malformed requests (bad JSON, wrong types, unknown fields, wrong method/path) get 4xx
with a JSON ``{"error": ...}``; nothing a client sends produces a traceback.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from terse.core.errors import TerseError

log = logging.getLogger(__name__)

PAGE = Path(__file__).resolve().parent / "static" / "autocomplete.html"
API_PATH = "/api/drafts"
FIELDS = {"prompt", "num_drafts", "max_new_tokens", "client", "seq", "preset"}


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 16_384
    max_prompt_chars: int = 2_000
    max_drafts: int = 8
    max_new_tokens: int = 24
    max_pending: int = 4
    queue_timeout: float = 20.0


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class AutocompleteService:
    """Validates requests and runs decoding one at a time."""

    def __init__(self, drafter, limits: ServerLimits | None = None, default_drafts: int = 3,
                 default_new_tokens: int = 10):
        self.drafter = drafter
        self.limits = limits or ServerLimits()
        self.default_drafts, self.default_new_tokens = default_drafts, default_new_tokens
        self._model_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pending = 0
        self._latest: dict[str, int] = {}
        self.served = 0

    def parse(self, body: bytes) -> dict:
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a UTF-8 JSON object") from None
        if not isinstance(request, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        unknown = sorted(set(request) - FIELDS)
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown fields {unknown}; allowed: {sorted(FIELDS)}")
        prompt = request.get("prompt")
        if not isinstance(prompt, str):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'prompt' must be a string")
        if len(prompt) > self.limits.max_prompt_chars:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"prompt is {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}")
        out = {"prompt": prompt}
        for name, default, high in (("num_drafts", self.default_drafts, self.limits.max_drafts),
                                    ("max_new_tokens", self.default_new_tokens, self.limits.max_new_tokens)):
            value = request.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"'{name}' must be an integer in 1..{high}")
            out[name] = value
        from terse.superposed.config import PRESETS

        preset = request.get("preset")
        if preset is not None and preset not in PRESETS:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"'preset' must be one of {sorted(PRESETS)}")
        out["preset"] = preset
        client, seq = request.get("client"), request.get("seq", 0)
        if client is not None and (not isinstance(client, str) or not 0 < len(client) <= 64):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'client' must be a string of 1..64 characters")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'seq' must be a non-negative integer")
        out["client"], out["seq"] = client, seq
        return out

    def _superseded(self, client: str | None, seq: int) -> bool:
        return client is not None and self._latest.get(client, -1) > seq

    def complete(self, request: dict) -> dict:
        from terse.superposed.config import SuperposedConfig

        client, seq = request["client"], request["seq"]
        with self._state_lock:
            if self._pending >= self.limits.max_pending:
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "server busy: too many pending requests")
            self._pending += 1
            if client is not None:
                if len(self._latest) > 10_000:
                    self._latest.clear()
                self._latest[client] = max(seq, self._latest.get(client, -1))
        try:
            if not self._model_lock.acquire(timeout=self.limits.queue_timeout):
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "server busy: timed out waiting for the model")
            try:
                with self._state_lock:
                    if self._superseded(client, seq):
                        raise RequestError(HTTPStatus.CONFLICT, "superseded by a newer request from this client")
                prompt = request["prompt"]
                if not prompt.strip():
                    raise RequestError(HTTPStatus.BAD_REQUEST, "the prompt is empty")
                # A trailing space would become its own token, which BPE LMs rarely saw:
                # decode from the text without it and drop the space the drafts then start with.
                trimmed = prompt.rstrip(" ")
                start = time.perf_counter()
                config = None if request["preset"] is None else SuperposedConfig.preset(request["preset"])
                out = self.drafter.generate(trimmed, num_drafts=request["num_drafts"], config=config,
                                            max_new_tokens=request["max_new_tokens"])
                ms = (time.perf_counter() - start) * 1e3
                drafts = []
                for d in out.drafts:
                    text = d.text
                    if trimmed != prompt and text.startswith(" "):
                        text = text[1:]
                    drafts.append({"text": text, "score": round(d.normalized_score, 4), "finished": d.finished})
                self.served += 1
                return {"drafts": drafts, "ms": round(ms, 1), "seq": seq, "lm_forwards": out.stats.lm_forwards}
            except TerseError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from None
            finally:
                self._model_lock.release()
        finally:
            with self._state_lock:
                self._pending -= 1


class _Handler(BaseHTTPRequestHandler):
    server_version = "terse-autocomplete/1"
    protocol_version = "HTTP/1.1"
    service: AutocompleteService  # set on the subclass made by make_server

    def log_message(self, fmt, *args):  # route access logs to logging, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, obj: dict, extra: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", extra)

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/api/health":
            self._json(HTTPStatus.OK, {"status": "ok", "served": self.service.served})
        elif path == API_PATH:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use POST {API_PATH}"}, {"Allow": "POST"})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    do_HEAD = do_GET

    def do_POST(self):  # noqa: N802
        if self.path.split("?", 1)[0] != API_PATH:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
            return
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            self.close_connection = True
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "a Content-Length header is required"})
            return
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._json(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"})
            return
        if size > self.service.limits.max_body_bytes:
            self.close_connection = True  # do not read (or wait for) the oversized body
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"body is {size} bytes; the limit is {self.service.limits.max_body_bytes}"})
            return
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        body = self.rfile.read(size)
        if len(body) < size:
            self.close_connection = True
            self._json(HTTPStatus.BAD_REQUEST, {"error": "body shorter than Content-Length"})
            return
        if ctype != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "Content-Type must be application/json"})
            return
        try:
            result = self.service.complete(self.service.parse(body))
        except RequestError as exc:
            extra = {"Retry-After": "1"} if exc.status == HTTPStatus.SERVICE_UNAVAILABLE else None
            self._json(exc.status, {"error": str(exc)}, extra)
            return
        except Exception:  # never leak a traceback to the client
            log.exception("decoding failed")
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error while decoding"})
            return
        self._json(HTTPStatus.OK, result)

    def _unsupported(self):
        self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"method {self.command} not allowed"}, {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _unsupported


class AutocompleteServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 16


def make_server(service: AutocompleteService, host: str = "127.0.0.1", port: int = 8765) -> AutocompleteServer:
    """An HTTP server for ``service`` (``port=0`` picks a free port: see ``server.server_address``)."""
    handler = type("Handler", (_Handler,), {"service": service, "timeout": 30})
    try:
        return AutocompleteServer((host, port), handler)
    except OSError as exc:
        raise TerseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
