"""A local stand-in for the API Gateway HTTP API in front of the API function (payload format 2.0).

    with ApiGateway(api_fn.invoke, port=3000, routes=TEMPLATE_ROUTES).start() as gw:
        # curl -X POST http://127.0.0.1:3000/embed -H 'Content-Type: image/jpeg' --data-binary @photo.jpg

Each HTTP request becomes the event API Gateway would send (``version`` "2.0", ``routeKey``, ``rawPath``,
``rawQueryString``, lower-cased ``headers``, ``cookies``, ``queryStringParameters``,
``requestContext.http``; a binary body base64-encoded with ``isBase64Encoded: true``), the function is
invoked once (invokes are serialized: the RIE serves one at a time), and its result is written back
(``statusCode``, ``headers``, ``cookies`` → ``Set-Cookie``, ``body`` base64-decoded when
``isBase64Encoded``). A result that is not such an object is returned as JSON with status 200, as API
Gateway does.

What API Gateway itself answers without calling the function (same status codes as AWS; the body carries
both AWS's ``message`` and this project's ``{"error": {"code", "message"}}`` contract):
413 when the request exceeds 10 MB (the HTTP API limit) or its event exceeds the 6 MB Lambda invoke payload
(≈ 4.5 MB of raw image once base64-encoded); 404 for a method/path outside ``routes``; 502 when the
function fails (an unhandled error or timeout) or returns something malformed.

With ``iam`` (access key id → secret key), every route requires a SigV4 signature, as the template's
default ``ApiAuth=AWS_IAM`` does: unsigned or badly signed requests get API Gateway's 403
(``infra.local.sigv4``), so the clients the README names are tested against what a deployed stack answers.

The server binds 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.local.net import HOST
from infra.local.rie import InvokeResult
from infra.local.sigv4 import Refusal, verify

LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes of the invoke request (the JSON event), synchronous invokes
API_PAYLOAD_LIMIT = 10 * 1024 * 1024  # bytes of an HTTP API request body
# The routes of template.yaml (AWS::ApiGatewayV2::Route); anything else is API Gateway's own 404.
TEMPLATE_ROUTES = ("POST /embed", "POST /embed/text", "POST /search", "GET /model", "GET /health")
# Media types whose bodies API Gateway passes as text; any other body (or one that is not UTF-8) is base64.
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded")

Invoke = Callable[[dict[str, Any]], InvokeResult]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def gateway_error(status: int, code: str, message: str) -> HttpResponse:
    """A response API Gateway produces itself (the function is not called)."""
    aws_message = HTTPStatus(status).phrase
    body = json.dumps({"message": aws_message, "error": {"code": code, "message": message}}).encode()
    return HttpResponse(status, [("Content-Type", "application/json")], body)


def is_text(content_type: str) -> bool:
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml"))


def match_route(method: str, path: str, routes: Iterable[str] | None) -> str | None:
    """The route key a request matches (exact ``METHOD /path`` or ``ANY /path``); ``$default`` if no routes
    are configured; None for API Gateway's 404."""
    if routes is None:
        return "$default"
    for route in routes:
        if route == "$default":
            return route
        r_method, _, r_path = route.partition(" ")
        if r_path == path and r_method in (method, "ANY"):
            return route
    return None


def to_event(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    route_key: str = "$default",
    source_ip: str = HOST,
    protocol: str = "HTTP/1.1",
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event for one request.

    ``target`` is the request line's path with its query string. Repeated headers and query parameters are
    joined with commas, cookies go to ``cookies``, and the body is base64 unless its type is text."""
    split = urlsplit(target)
    raw_path = split.path or "/"
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(now, UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": split.query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": HOST,
            "domainPrefix": "local",
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": stamp.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        try:
            text = body.decode("utf-8") if is_text(merged.get("content-type", "")) else None
        except UnicodeDecodeError:
            text = None
        if text is None:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            event["body"] = text
    return event


def event_size(event: Mapping[str, Any]) -> int:
    """Bytes of the invoke payload (what Lambda's 6 MB limit counts)."""
    return len(json.dumps(event, separators=(",", ":")).encode())


def from_result(result: InvokeResult) -> HttpResponse:
    """The HTTP response API Gateway makes of a payload 2.0 function result."""
    if result.error:
        return gateway_error(502, "function_error", "the function failed (unhandled error or timeout)")
    payload = result.payload
    if not (isinstance(payload, dict) and "statusCode" in payload):
        # Format 2.0 infers a response: the result as a JSON body, status 200.
        return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(payload).encode())
    try:
        status = int(payload["statusCode"])
        HTTPStatus(status)
        raw = payload.get("body")
        if raw is None:
            body = b""
        elif payload.get("isBase64Encoded"):
            body = base64.b64decode(raw, validate=True)
        else:
            body = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(raw).encode()
    except (TypeError, ValueError):
        return gateway_error(502, "malformed_response", "the function returned a malformed response")
    headers = [(str(k), str(v)) for k, v in (payload.get("headers") or {}).items()]
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        headers += [(str(name), str(v)) for v in values]
    headers += [("Set-Cookie", str(c)) for c in payload.get("cookies") or []]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(status, headers, body)


Authorize = Callable[[str, str, list[tuple[str, str]], bytes], "Refusal | None"]


def handle(
    invoke: Invoke,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    routes: Iterable[str] | None = None,
    source_ip: str = HOST,
    payload_limit: int = LAMBDA_PAYLOAD_LIMIT,
    authorize: Authorize | None = None,
) -> HttpResponse:
    """One request through the gateway: route, authorize (IAM), translate, check the payload limit, invoke,
    translate back."""
    headers = list(headers)
    route_key = match_route(method.upper(), urlsplit(target).path or "/", routes)
    if route_key is None:
        return gateway_error(404, "not_found", f"no route {method.upper()} {urlsplit(target).path}")
    if authorize is not None and (refusal := authorize(method, target, headers, body)) is not None:
        # API Gateway's own body for an IAM refusal: {"message": ...}, no integration call.
        return HttpResponse(
            refusal.status,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ForbiddenException")],
            json.dumps({"message": refusal.message}).encode(),
        )
    event = to_event(method, target, headers, body, route_key=route_key, source_ip=source_ip)
    size = event_size(event)
    if size > payload_limit:
        return gateway_error(
            413,
            "payload_too_large",
            f"the request's Lambda event is {size} bytes; the invoke payload limit is {payload_limit} bytes "
            f"(a binary body grows by 4/3 in base64)",
        )
    return from_result(invoke(event))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # The status line and headers, then the body, go out as separate writes: with Nagle's algorithm on, a
    # keep-alive client's delayed ACK holds the body back ~40 ms on every response.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        gw = self.server.gateway
        try:
            body = self._read_body(gw.api_limit)
        except _TooLarge as exc:
            self.close_connection = True  # the unread rest of the body must not be parsed as a request
            self._write(gateway_error(413, "payload_too_large", str(exc)))
            return
        except ValueError as exc:
            self.close_connection = True
            self._write(gateway_error(400, "bad_request", str(exc)))
            return
        response = handle(
            gw.serialized_invoke,
            self.command,
            self.path,
            self.headers.items(),
            body,
            routes=gw.routes,
            source_ip=self.client_address[0],
            payload_limit=gw.payload_limit,
            authorize=gw.authorize if gw.iam is not None else None,
        )
        self._write(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            raise _TooLarge(f"request body is {length} bytes; the HTTP API limit is {limit} bytes")
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        for _ in range(1_000_000):  # bounded: a chunk has at least one byte
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                for _ in range(100):  # trailers up to the empty line
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts)
            total += size
            if total > limit:
                raise _TooLarge(f"request body exceeds the HTTP API limit of {limit} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after the chunk
        raise ValueError("too many chunks")

    def _write(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.gateway.access_log is not None:
            self.server.gateway.access_log(f"{self.address_string()} {format % args}")


class _TooLarge(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gateway: ApiGateway


@dataclass
class ApiGateway:
    """The HTTP front: a ``ThreadingHTTPServer`` on 127.0.0.1 that invokes ``invoke`` once per request."""

    invoke: Invoke
    port: int = 0  # 0: any free port (see ``.port`` after start)
    routes: tuple[str, ...] | None = TEMPLATE_ROUTES  # None: forward everything as "$default"
    payload_limit: int = LAMBDA_PAYLOAD_LIMIT
    api_limit: int = API_PAYLOAD_LIMIT
    access_log: Callable[[str], None] | None = None
    iam: Mapping[str, str] | None = None  # access key id → secret key: SigV4 required (ApiAuth=AWS_IAM)
    region: str = "us-east-1"
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def authorize(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Refusal | None:
        host = next((v for k, v in headers if k.lower() == "host"), f"{HOST}:{self.port}")
        return verify(method, f"http://{host}{target}", headers, body, secrets=self.iam or {}, region=self.region)

    def serialized_invoke(self, event: dict[str, Any]) -> InvokeResult:
        """One invoke at a time (the RIE panics on concurrent invokes)."""
        with self.lock:
            return self.invoke(event)

    def start(self) -> ApiGateway:
        server = _Server((HOST, self.port), _Handler)
        server.gateway = self
        self._server, self.port = server, int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.name = "api-gateway"
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> ApiGateway:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
