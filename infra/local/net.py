"""Loopback helpers shared by the local-stack modules: every server here binds 127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

HOST = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    """A port free right now. Another process may take it before the server binds it: servers started in
    a subprocess go through ``on_free_ports``, in-process servers bind port 0 and read theirs back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0, alive: object = None) -> None:
    """Block until 127.0.0.1:port accepts connections (bounded by ``timeout``).

    ``alive``: an optional callable returning False once the server process has died (fail fast)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise RuntimeError(f"server for port {port} exited before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout:.0f}s")


def on_free_ports(start: Callable[[], T], attempts: int = 5) -> T:
    """``start()`` picks its ports with ``free_port``; when a port was taken meanwhile the server exits
    before listening (``RuntimeError``/``TimeoutError`` from ``wait_listening``): try again on new ports."""
    for attempt in range(attempts):
        try:
            return start()
        except (RuntimeError, TimeoutError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class LoopbackHttpServer:
    """The life of an in-process HTTP server on 127.0.0.1 (the fault proxy, the QueryVectors front): bound on
    ``port`` (0: the OS picks, race-free, read back), served by a daemon thread, stopped on exit. Subclasses
    are dataclasses with ``port``, ``_server`` and ``_thread`` fields; their ``start`` calls ``serve``."""

    port: int
    _server: ThreadingHTTPServer | None
    _thread: threading.Thread | None

    def serve(self, handler: type[BaseHTTPRequestHandler], name: str) -> Self:
        self._server = ThreadingHTTPServer((HOST, self.port), handler)
        self.port = int(self._server.server_address[1])
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()
        return self

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
