"""A local scripted HTTP server for provider tests (127.0.0.1, ephemeral port, threaded).

It speaks the OpenAI chat-completions wire format (``POST .../chat/completions``; Ollama's ``/v1`` is the
same) and Gemini's ``generateContent`` REST format (``POST /{version}/models/{model}:generateContent``).
Each test scripts the responses, consumed one per request in order; when the script runs out the server
answers ``ok``. Every request is recorded (method, path, headers, parsed JSON body, time).

Response kinds: ``ok(text)``, ``status(code, retry_after=..., body=...)``, ``hang(seconds)`` (answers
only after ``seconds`` or when the server stops, whichever is first: bounded), ``malformed()`` (200 with a
non-JSON body), ``empty()`` (200 with empty choices / candidates).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

MAX_HANG_S = 5.0


@dataclass
class Reply:
    kind: str  # ok | status | hang | malformed | empty | raw
    text: str = "fake answer"
    code: int = 200
    retry_after: Any = None  # str, or a callable giving it when the reply is sent
    body: str | None = None
    seconds: float = 0.0


def ok(text: str = "fake answer") -> Reply:
    return Reply("ok", text=text)


def status(code: int, retry_after: str | None = None, body: str | None = None) -> Reply:
    return Reply("status", code=code, retry_after=retry_after, body=body)


def hang(seconds: float = 3.0) -> Reply:
    return Reply("hang", seconds=min(seconds, MAX_HANG_S))


def malformed() -> Reply:
    return Reply("malformed")


def empty() -> Reply:
    return Reply("empty")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: object
    raw: bytes
    t: float


@dataclass
class FakeServer:
    script: deque = field(default_factory=deque)
    requests: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> FakeServer:
        with self._lock:
            self.script.extend(replies)
        return self

    def next_reply(self) -> Reply:
        with self._lock:
            return self.script.popleft() if self.script else ok()

    def start(self) -> FakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                with server._lock:
                    server.requests.append(
                        Seen(
                            "POST",
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            raw,
                            time.monotonic(),
                        )
                    )
                server._answer(self, server.next_reply())

            def do_GET(self):
                self.do_POST()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    # -- wire formats ----------------------------------------------------------------------------
    @staticmethod
    def _is_gemini(path: str) -> bool:
        return ":generateContent" in path

    def _ok_body(self, path: str, text: str) -> dict:
        if self._is_gemini(path):
            return {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
                "modelVersion": "fake-gemini",
            }
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake-model",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }

    def _empty_body(self, path: str) -> dict:
        if self._is_gemini(path):
            return {"candidates": [], "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "model": "fake-model", "choices": []}

    def _answer(self, h: BaseHTTPRequestHandler, r: Reply) -> None:
        headers = {}
        if r.kind == "hang":
            self._stop.wait(r.seconds)
            payload, code = json.dumps(self._ok_body(h.path, "late answer")).encode(), 200
        elif r.kind == "ok":
            payload, code = json.dumps(self._ok_body(h.path, r.text)).encode(), 200
        elif r.kind == "empty":
            payload, code = json.dumps(self._empty_body(h.path)).encode(), 200
        elif r.kind == "malformed":
            payload, code = b"<html>this is not json {", 200
        elif r.kind == "status":
            code = r.code
            if r.body is not None:  # "{auth}" echoes the credentials received (key-leak tests)
                auth = (h.headers.get("Authorization") or "") + (h.headers.get("x-goog-api-key") or "")
                payload = r.body.replace("{auth}", auth).encode()
            else:
                payload = json.dumps(
                    {
                        "error": {
                            "code": code,
                            "message": f"scripted error {code}",
                            "status": "RESOURCE_EXHAUSTED" if code == 429 else "INTERNAL",
                        }
                    }
                ).encode()
            if r.retry_after is not None:  # a callable is rendered as the reply goes out (an HTTP date from now)
                headers["Retry-After"] = r.retry_after() if callable(r.retry_after) else r.retry_after
        else:
            raise ValueError(r.kind)
        try:
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


@pytest.fixture
def fake_server():
    s = FakeServer().start()
    try:
        yield s
    finally:
        s.stop()
