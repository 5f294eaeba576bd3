"""The local API Gateway HTTP API front (infra/local/api_gateway.py): v2 event translation, response translation,
routes, the 6 MB Lambda payload limit, over real HTTP on 127.0.0.1 with a fake function."""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.api_gateway import (
    LAMBDA_PAYLOAD_LIMIT,
    ApiGateway,
    event_size,
    from_result,
    handle,
    to_event,
)
from infra.local.rie import InvokeResult
from tests.infra.local.functions import echo


def test_event_is_payload_v2() -> None:
    headers = [("Content-Type", "image/jpeg"), ("X-Multi", "a"), ("x-multi", "b"), ("Cookie", "a=1; b=2"),
               ("User-Agent", "curl/8")]  # fmt: skip
    ev = to_event("post", "/embed?x=1&x=2&y=", headers, b"\xff\xd8\xff", route_key="POST /embed",
                  source_ip="127.0.0.1", now=1_700_000_000.5)  # fmt: skip
    assert ev["version"] == "2.0" and ev["routeKey"] == "POST /embed"
    assert (ev["rawPath"], ev["rawQueryString"]) == ("/embed", "x=1&x=2&y=")
    assert ev["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert ev["headers"] == {"content-type": "image/jpeg", "x-multi": "a,b", "user-agent": "curl/8"}
    assert ev["cookies"] == ["a=1", "b=2"]
    http = ev["requestContext"]["http"]
    assert http == {"method": "POST", "path": "/embed", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                    "userAgent": "curl/8"}  # fmt: skip
    assert ev["requestContext"]["routeKey"] == "POST /embed" and ev["requestContext"]["stage"] == "$default"
    assert ev["requestContext"]["timeEpoch"] == 1_700_000_000_500
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == b"\xff\xd8\xff"


def test_text_bodies_stay_text_and_no_body_means_no_body() -> None:
    ev = to_event("POST", "/embed", [("content-type", "application/json; charset=utf-8")], b'{"images": []}')
    assert ev["isBase64Encoded"] is False and ev["body"] == '{"images": []}'
    invalid_utf8 = to_event("POST", "/embed", [("content-type", "text/plain")], b"\xff\xfe")
    assert invalid_utf8["isBase64Encoded"] is True
    get = to_event("GET", "/health", [], b"")
    assert "body" not in get and get["isBase64Encoded"] is False
    assert "queryStringParameters" not in get and "cookies" not in get


def test_the_powertools_resolver_routes_our_events() -> None:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    app = APIGatewayHttpResolver()

    @app.post("/embed")
    def embed() -> dict[str, Any]:
        ev = app.current_event
        return {"bytes": len(base64.b64decode(ev.body or "")), "q": ev.get_query_string_value("k")}

    ev = to_event("POST", "/embed?k=v", [("content-type", "image/png")], b"12345", route_key="POST /embed")
    out = app.resolve(ev, None)  # type: ignore[arg-type]
    assert out["statusCode"] == 200 and json.loads(out["body"]) == {"bytes": 5, "q": "v"}


def test_result_translation() -> None:
    ok = from_result(InvokeResult({"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["c=1"],
                                   "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True},
                                  False, 0.0))  # fmt: skip
    assert ok.status == 201 and ok.body == b"\x00\x01"
    assert ("X-A", "1") in ok.headers and ("Set-Cookie", "c=1") in ok.headers
    inferred = from_result(InvokeResult({"hello": "world"}, False, 0.0))
    assert inferred.status == 200 and json.loads(inferred.body) == {"hello": "world"}
    failed = from_result(InvokeResult({"errorType": "Boom", "errorMessage": "x"}, True, 0.0))
    assert failed.status == 502 and json.loads(failed.body)["message"] == "Bad Gateway"
    malformed = from_result(InvokeResult({"statusCode": "abc"}, False, 0.0))
    assert malformed.status == 502


def test_routes_and_payload_limit_are_enforced_before_the_function() -> None:
    calls: list[dict[str, Any]] = []

    def record(event: dict[str, Any]) -> InvokeResult:
        calls.append(event)
        return echo(event)

    routes = ("POST /embed", "GET /health")
    not_found = handle(record, "GET", "/embed", [], b"", routes=routes)
    assert not_found.status == 404 and json.loads(not_found.body)["error"]["code"] == "not_found"
    # 4.5 MiB of binary is ~6.0 MiB of base64: over the 6 MB invoke payload.
    big = handle(record, "POST", "/embed", [("content-type", "image/jpeg")], os.urandom(4_800_000), routes=routes)
    body = json.loads(big.body)
    assert big.status == 413 and body["message"] == "Request Entity Too Large"
    assert body["error"]["code"] == "payload_too_large"
    assert calls == []
    fits = os.urandom(4_500_000)
    assert event_size(to_event("POST", "/embed", [("content-type", "image/jpeg")], fits)) < LAMBDA_PAYLOAD_LIMIT
    ok = handle(record, "POST", "/embed", [("content-type", "image/jpeg")], fits, routes=routes)
    assert ok.status == 200 and ok.body == fits and calls[0]["routeKey"] == "POST /embed"


@pytest.fixture
def gateway() -> Iterator[ApiGateway]:
    with ApiGateway(echo, routes=("POST /embed", "GET /health")).start() as gw:
        yield gw


def request(gw: ApiGateway, method: str, path: str, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    req = urllib.request.Request(gw.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_binary_round_trip_over_http(gateway: ApiGateway) -> None:
    data = bytes(range(256)) * 1000
    status, headers, body = request(gateway, "POST", "/embed?a=b", data, {"Content-Type": "image/jpeg"})
    assert status == 200 and body == data and headers["Content-Type"] == "image/jpeg"
    seen = json.loads(headers["X-Event"])
    assert seen == {"routeKey": "POST /embed", "rawPath": "/embed", "rawQueryString": "a=b", "isBase64Encoded": True}
    assert gateway.url.startswith("http://127.0.0.1:")


def test_413_and_404_over_http(gateway: ApiGateway) -> None:
    status, _, body = request(gateway, "POST", "/embed", os.urandom(5_000_000), {"Content-Type": "image/jpeg"})
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    status, _, body = request(gateway, "DELETE", "/embed")
    assert status == 404


def test_concurrent_requests_reach_the_function_one_at_a_time() -> None:
    active, peak = 0, 0
    guard = threading.Lock()

    def slow(event: dict[str, Any]) -> InvokeResult:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        threading.Event().wait(0.05)
        with guard:
            active -= 1
        return echo(event)

    with ApiGateway(slow, routes=None).start() as gw:
        threads = [threading.Thread(target=request, args=(gw, "GET", f"/any/{i}")) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert peak == 1


def test_chunked_body_and_oversized_content_length(gateway: ApiGateway) -> None:
    import http.client
    import socket

    data = os.urandom(300_000)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
    conn.request("POST", "/embed", body=chunks, headers={"Content-Type": "image/png"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == data
    conn.close()
    # Over the HTTP API's 10 MB: refused from the headers alone, without reading (or invoking) anything.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as s:
        s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 11000000\r\n\r\n")
        reply = s.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 413") and b"payload_too_large" in reply
