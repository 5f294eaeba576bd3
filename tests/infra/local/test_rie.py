"""Invoking a function under the Runtime Interface Emulator (infra/local/rie.py): what counts as a function
error (the header, an HTTP error, an error payload) and what a payload is, against a stand-in RIE."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from infra.local.net import HOST, LoopbackHttpServer
from infra.local.rie import INVOKE_PATH, LocalFunction, post_invoke, rie_binary


@dataclass
class FakeRie(LoopbackHttpServer):
    """Answers each invoke with the next (status, headers, body) of ``answers``; records what it got."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    got: list[tuple[str, Any]] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: Thread | None = None

    def start(self) -> FakeRie:
        rie = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                rie.got.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                status, headers, body = rie.answers.pop(0)
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return self.serve(Handler, "fake-rie")


@pytest.fixture
def rie() -> Iterator[FakeRie]:
    with FakeRie() as server:
        yield server


def test_a_payload_is_the_handlers_return_value(rie: FakeRie) -> None:
    rie.answers.append((200, {}, b'{"batchItemFailures": []}'))
    result = post_invoke(f"http://{HOST}:{rie.port}{INVOKE_PATH}", {"Records": []}, timeout=10)
    assert (result.payload, result.error) == ({"batchItemFailures": []}, False) and result.wall_ms > 0
    assert rie.got == [(INVOKE_PATH, {"Records": []})]


@pytest.mark.parametrize(
    ("answer", "payload"),
    [
        ((200, {"X-Amz-Function-Error": "Unhandled"}, b'{"oops": 1}'), {"oops": 1}),
        ((200, {}, b'{"errorType": "TransientError", "errorMessage": "retry"}'), None),
        ((500, {}, b"not json"), "not json"),
        ((502, {}, b""), None),
    ],
)
def test_a_function_error_is_the_header_an_http_error_or_an_error_payload(
    rie: FakeRie, answer: tuple[int, dict[str, str], bytes], payload: Any
) -> None:
    rie.answers.append(answer)
    result = post_invoke(f"http://{HOST}:{rie.port}{INVOKE_PATH}", {}, timeout=10)
    assert result.error is True
    if payload is not None:
        assert result.payload == payload
    elif answer[2]:
        assert result.payload["errorType"] == "TransientError"


def test_a_local_function_runs_a_handler_under_the_rie_on_loopback_until_stopped() -> None:
    binary = rie_binary()
    assert binary.name.startswith("aws-lambda-rie-") and binary.stat().st_mode & 0o111
    with LocalFunction("tests.infra.local.functions.lambda_echo", name="echo", timeout_s=30) as fn:
        assert fn.url == f"http://127.0.0.1:{fn.port}{INVOKE_PATH}" and fn.running()
        ok = fn.invoke({"a": [1, "b"]})
        assert (ok.payload, ok.error) == ({"event": {"a": [1, "b"]}, "function": "echo"}, False)
        failed = fn.invoke({"raise": "boom"})
        assert failed.error and failed.payload["errorType"] == "ValueError" and failed.payload["errorMessage"] == "boom"
        pid = fn._proc.pid if fn._proc else 0
    assert not fn.running() and "boom" in fn.logs()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the RIE and the runtime it started are gone
