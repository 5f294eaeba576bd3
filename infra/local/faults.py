"""A fault-injecting HTTP proxy on 127.0.0.1, put between a function and one service (``AWS_ENDPOINT_URL_<SERVICE>``).

Modes: ``pass`` (forward), ``throttle`` (DynamoDB's 400 ``ThrottlingException``, or S3's 503 ``SlowDown``,
which botocore retries and then raises), ``error`` (HTTP 500), ``down`` (close the connection without
answering, as an unreachable endpoint) and ``slow`` (forward after ``delay_s``, then send the response at
``bytes_per_s`` when set: S3's first-byte latency and per-connection throughput, for the cost
measurement). The tests switch ``mode`` to simulate an outage "for a while"; a ``chooser`` picks the mode
per request instead (random faults in the soak test).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

from infra.local.net import HOST, LoopbackHttpServer

Mode = Literal["pass", "throttle", "error", "down", "slow"]
_CHUNK = 64 * 1024  # paced writes of the ``slow`` mode
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class FaultProxy(LoopbackHttpServer):
    target: str  # http://127.0.0.1:PORT of the real endpoint
    mode: Mode = "pass"
    port: int = 0
    flavor: Literal["dynamodb", "s3"] = "dynamodb"  # the shape of injected errors
    chooser: Callable[[], Mode] | None = None  # per-request mode; None: ``mode``
    delay_s: float = 0.3  # the ``slow`` mode's delay before the first byte
    bytes_per_s: float | None = None  # the ``slow`` mode's response rate (None: as fast as loopback)
    counts: dict[str, int] = field(default_factory=lambda: {"pass": 0, "throttle": 0, "error": 0, "down": 0, "slow": 0})
    # Requests by operation, as the service bills them (the cost benchmark reads it): DynamoDB's by its
    # X-Amz-Target (``PutItem``...; ``BatchGetItem.keys`` counts the items asked for), S3's by HTTP method.
    operations: Counter[str] = field(default_factory=Counter)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def count_operation(self, method: str, target: str | None, body: bytes) -> None:
        if not target:
            self.operations[method] += 1
            return
        operation = target.rsplit(".", 1)[-1]
        self.operations[operation] += 1
        if operation == "BatchGetItem":
            try:
                asked = json.loads(body or b"{}").get("RequestItems") or {}
                self.operations["BatchGetItem.keys"] += sum(len(t.get("Keys") or []) for t in asked.values())
            except (ValueError, AttributeError):
                pass

    def start(self) -> FaultProxy:
        proxy = self
        target = urlsplit(self.target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes (see api_gateway.py)

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = proxy.chooser() if proxy.chooser else proxy.mode
                proxy.counts[mode] += 1
                proxy.count_operation(self.command, self.headers.get("X-Amz-Target"), body)
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode in ("throttle", "error"):
                    self._inject(mode)
                    return
                if mode == "slow":
                    time.sleep(proxy.delay_s)
                conn = http.client.HTTPConnection(target.hostname or HOST, target.port or 80, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mode == "slow" and proxy.bytes_per_s:
                    for i in range(0, len(data), _CHUNK):
                        self.wfile.write(data[i : i + _CHUNK])
                        time.sleep(min(_CHUNK, len(data) - i) / proxy.bytes_per_s)
                else:
                    self.wfile.write(data)

            def _inject(self, mode: str) -> None:
                if proxy.flavor == "s3":
                    status, code = (503, "SlowDown") if mode == "throttle" else (500, "InternalError")
                    out = f"<Error><Code>{code}</Code><Message>injected {mode}</Message></Error>".encode()
                    content_type = "application/xml"
                else:
                    status = 400 if mode == "throttle" else 500
                    code = "ThrottlingException" if mode == "throttle" else "InternalServerError"
                    out = json.dumps(
                        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"injected {mode}"}
                    ).encode()
                    content_type = "application/x-amz-json-1.0"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("x-amzn-ErrorType", code)
                # A HEAD response carries no body, whatever its Content-Length says.
                self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return self.serve(Handler, "fault-proxy")
