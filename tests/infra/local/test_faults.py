"""The fault-injecting proxy (infra/local/faults.py) in front of a stand-in service: each mode answers as the
service would fail (DynamoDB's and S3's error shapes), and requests are counted as the service bills them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from infra.local.faults import FaultProxy, Mode
from infra.local.net import HOST, LoopbackHttpServer


@dataclass
class Service(LoopbackHttpServer):
    """Answers 200 with the request's method, path and body."""

    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: Thread | None = None

    def start(self) -> Service:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                out = json.dumps({"method": self.command, "path": self.path, "body": body.decode()}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        return self.serve(Handler, "service")


@pytest.fixture
def service() -> Iterator[Service]:
    with Service() as s:
        yield s


def send(
    proxy: FaultProxy, method: str = "POST", path: str = "/", body: bytes = b"", target: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, proxy.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"X-Amz-Target": target} if target else {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_pass_forwards_the_request_and_the_answer(service: Service) -> None:
    with FaultProxy(target=f"http://{HOST}:{service.port}") as proxy:
        status, _, body = send(proxy, "PUT", "/bucket/a%20b.jpg?x=1", b"pixels")
    assert status == 200 and json.loads(body) == {"method": "PUT", "path": "/bucket/a%20b.jpg?x=1", "body": "pixels"}
    assert proxy.counts["pass"] == 1 and proxy.operations == {"PUT": 1}


def test_each_flavour_fails_as_its_service_does(service: Service) -> None:
    with FaultProxy(target=f"http://{HOST}:{service.port}", mode="throttle") as ddb:
        status, headers, body = send(ddb, target="DynamoDB_20120810.PutItem")
        assert status == 400 and "ThrottlingException" in body.decode()  # botocore retries it, then raises
        ddb.mode = "error"
        assert send(ddb)[0] == 500
    with FaultProxy(target=f"http://{HOST}:{service.port}", mode="throttle", flavor="s3") as s3:
        status, headers, body = send(s3, "GET", "/bucket/k.jpg")
        assert status == 503 and b"<Code>SlowDown</Code>" in body and headers["Content-Type"] == "application/xml"
        s3.mode = "error"
        status, _, body = send(s3, "GET", "/bucket/k.jpg")
        assert status == 500 and b"<Code>InternalError</Code>" in body
    assert ddb.counts["throttle"] == ddb.counts["error"] == 1 and ddb.counts["pass"] == 0


def test_down_closes_the_connection_and_a_chooser_picks_per_request(service: Service) -> None:
    modes: Iterator[Mode] = iter(["down", "pass"])
    with FaultProxy(target=f"http://{HOST}:{service.port}", chooser=lambda: next(modes)) as proxy:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            send(proxy)
        assert send(proxy)[0] == 200
    assert (proxy.counts["down"], proxy.counts["pass"]) == (1, 1)


def test_requests_are_counted_by_operation_and_batch_gets_by_key(service: Service) -> None:
    with FaultProxy(target=f"http://{HOST}:{service.port}") as proxy:
        send(proxy, target="DynamoDB_20120810.GetItem")
        keys = {"RequestItems": {"t": {"Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}]}}}
        send(proxy, body=json.dumps(keys).encode(), target="DynamoDB_20120810.BatchGetItem")
        send(proxy, body=b"not json", target="DynamoDB_20120810.BatchGetItem")
        send(proxy, "GET", "/bucket/k.jpg")
    assert proxy.operations == {"GetItem": 1, "BatchGetItem": 2, "BatchGetItem.keys": 2, "GET": 1}


def test_slow_waits_before_the_first_byte(service: Service) -> None:
    import time

    with FaultProxy(target=f"http://{HOST}:{service.port}", mode="slow", delay_s=0.2, bytes_per_s=1e6) as proxy:
        t0 = time.perf_counter()
        status, _, body = send(proxy, body=b"x")
        assert status == 200 and json.loads(body)["body"] == "x" and time.perf_counter() - t0 >= 0.2
