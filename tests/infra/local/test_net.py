"""Loopback helpers of the local stack (infra/local/net.py): servers on 127.0.0.1 only, ports that race, and
waits that end."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from infra.local.net import HOST, LoopbackHttpServer, free_port, on_free_ports, wait_listening


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class HelloServer(LoopbackHttpServer):
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: Thread | None = None

    def start(self) -> HelloServer:
        return self.serve(Hello, "hello")


def test_a_server_binds_loopback_on_the_port_the_os_gives_and_stops() -> None:
    with HelloServer() as server:
        assert HOST == "127.0.0.1" and server.port and server._server is not None
        assert server._server.server_address == (HOST, server.port)
        with urllib.request.urlopen(f"http://{HOST}:{server.port}/", timeout=10) as resp:
            assert resp.read() == b"hello"
        port = server.port
    assert server._server is None and server._thread is None
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=1).close()


def test_a_free_port_can_be_bound_and_waiting_on_it_times_out() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind((HOST, port))
    with pytest.raises(TimeoutError, match=f"nothing listening on 127.0.0.1:{port}"):
        wait_listening(port, timeout=0.3)


def test_waiting_ends_as_soon_as_it_listens_or_its_server_has_died() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        wait_listening(s.getsockname()[1], timeout=5)  # returns at once
    with pytest.raises(RuntimeError, match="exited before listening"):
        wait_listening(free_port(), timeout=30, alive=lambda: False)


def test_a_start_that_lost_its_ports_is_tried_again_then_given_up() -> None:
    tries: list[int] = []

    def start() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise RuntimeError("port taken")
        return "started"

    assert on_free_ports(start) == "started" and len(tries) == 3

    def never() -> str:
        tries.append(1)
        raise TimeoutError("nothing listening")

    tries.clear()
    with pytest.raises(TimeoutError):
        on_free_ports(never, attempts=4)
    assert len(tries) == 4
