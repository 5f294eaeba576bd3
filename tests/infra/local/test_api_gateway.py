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
from datetime import UTC, datetime, timedelta
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


def echo(event: dict[str, Any]) -> InvokeResult:
    """A function that returns the request body as it got it, plus the event in a header."""
    headers = {
        "Content-Type": event["headers"].get("content-type", "text/plain"),
        "X-Event": json.dumps({k: event[k] for k in ("routeKey", "rawPath", "rawQueryString", "isBase64Encoded")}),
    }
    payload = {"statusCode": 200, "headers": headers, "body": event.get("body", ""),
               "isBase64Encoded": event["isBase64Encoded"]}  # fmt: skip
    return InvokeResult(payload=payload, error=False, wall_ms=0.0)


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


# --- IAM auth (ApiAuth=AWS_IAM, the template's default) -------------------------------------------------------
KEYS = {"AKIDLOCAL": "local-secret"}


@pytest.fixture
def iam_gateway() -> Iterator[ApiGateway]:
    with ApiGateway(echo, routes=("POST /embed", "GET /model"), iam=KEYS, region="us-east-1").start() as gw:
        yield gw


def signed(
    url: str,
    method: str = "POST",
    body: bytes = b"",
    *,
    key: str = "AKIDLOCAL",
    secret: str = "local-secret",
    region: str = "us-east-1",
    service: str = "execute-api",
    token: str | None = None,
) -> dict[str, str]:
    """The headers botocore's SigV4 signer (what boto3, awscurl and the AWS SDKs use) adds to a request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    return dict(request.headers.items())


def signed_at(url: str, body: bytes, when: datetime) -> dict[str, str]:
    """``signed`` with the signer's clock at ``when`` (botocore's signer always uses the current time)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    request.headers["X-Amz-Date"] = stamp
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials("AKIDLOCAL", "local-secret"), "execute-api", "us-east-1")
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    names = auth.signed_headers(auth.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={names}, Signature={signature}"
    )
    return dict(request.headers.items())


def send(url: str, method: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, {"body": resp.read()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_iam_auth_lets_a_signed_request_through(iam_gateway: ApiGateway) -> None:
    url, body = f"{iam_gateway.url}/embed?x=1", b'{"texts": ["a"]}'
    status, got = send(url, "POST", body, signed(url, body=body))
    assert status == 200 and got["body"] == body
    token = signed(f"{iam_gateway.url}/model", "GET", token="session-token")  # temporary credentials too
    assert send(f"{iam_gateway.url}/model", "GET", b"", token)[0] == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unsigned", "Forbidden"),
        ("tampered body", "signature we calculated does not match"),
        ("other secret", "signature we calculated does not match"),
        ("unknown key", "security token included in the request is invalid"),
        ("other region", "scoped to a valid region"),
        ("other service", "scoped to a valid region and service"),
        ("expired", "Signature expired"),
    ],
)
def test_iam_auth_refuses_what_api_gateway_refuses(iam_gateway: ApiGateway, change: str, message: str) -> None:
    url, body = f"{iam_gateway.url}/embed", b'{"texts": ["a"]}'
    headers = {
        "unsigned": {"Content-Type": "application/json"},
        "tampered body": signed(url, body=b'{"texts": ["b"]}'),
        "other secret": signed(url, body=body, secret="guess"),
        "unknown key": signed(url, body=body, key="AKIDOTHER"),
        "other region": signed(url, body=body, region="eu-west-1"),
        "other service": signed(url, body=body, service="lambda"),
        "expired": {**signed(url, body=body)},
    }[change]
    if change == "expired":  # a valid signature made 10 minutes ago
        headers = signed_at(url, body, datetime.now(UTC) - timedelta(minutes=10))
    status, got = send(url, "POST", body, headers)
    assert status == 403 and message in got["message"], got


def test_a_route_outside_the_api_is_404_before_any_auth(iam_gateway: ApiGateway) -> None:
    assert send(f"{iam_gateway.url}/nope", "GET", b"", {})[0] == 404


def test_awscurl_from_pip_signs_as_the_readme_says(iam_gateway: ApiGateway, tmp_path: Any) -> None:
    """awscurl (pip install awscurl), the README's client for the IAM-protected API, against the local front."""
    import subprocess
    import sys
    from pathlib import Path

    awscurl = Path(sys.executable).parent / "awscurl"
    body = tmp_path / "body.json"
    body.write_bytes(b'{"texts": ["a red bicycle"]}')
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDLOCAL", "AWS_SECRET_ACCESS_KEY": "local-secret"}
    env.pop("AWS_SESSION_TOKEN", None)
    ok = subprocess.run(
        [str(awscurl), "--service", "execute-api", "--region", "us-east-1", "-X", "POST",
         "-H", "Content-Type: application/json", "-d", f"@{body}", f"{iam_gateway.url}/embed"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip() == body.read_text(), ok.stderr[-2000:]
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    refused = subprocess.run(
        [str(awscurl), "--service", "execute-api", "--region", "us-east-1", "-X", "POST",
         "-H", "Content-Type: application/json", "-d", f"@{body}", f"{iam_gateway.url}/embed"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert "signature we calculated does not match" in refused.stdout + refused.stderr
