"""Loopback helpers shared by the local-stack modules: every server here binds 127.0.0.1 only."""

from __future__ import annotations

import socket
import time

HOST = "127.0.0.1"


def free_port() -> int:
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
