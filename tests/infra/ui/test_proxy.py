"""The gallery's API proxy (infra/ui/proxy.py): every request it forwards carries a SigV4 signature that the
local front's verification (infra/local/sigv4.py, what API Gateway's IAM auth checks) accepts, and nothing
else passes; over real HTTP on 127.0.0.1 through the local API Gateway front with IAM auth and a fake
function."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials

from infra.local.api_gateway import TEMPLATE_ROUTES, ApiGateway
from infra.local.net import free_port
from infra.local.rie import InvokeResult
from infra.local.sigv4 import verify
from infra.ui.proxy import ApiProxy, join, sign

KEY, SECRET, TOKEN = "AKIDGALLERY", "gallery-secret", "gallery-session-token"
REGION = "eu-west-1"


def signed(method: str, url: str, body: bytes, **kw: Any) -> list[tuple[str, str]]:
    """The headers as sent: the signature's, and the Host of the URL (http.client adds it)."""
    creds = kw.pop("credentials", Credentials(KEY, SECRET, TOKEN))
    headers = sign(method, url, {"Content-Type": "application/json"}, body, credentials=creds, region=REGION)
    return [*headers.items(), ("Host", url.split("/")[2])]


def test_a_signed_request_verifies_as_api_gateways_iam_auth_checks_it() -> None:
    url, body = "http://127.0.0.1:3000/search", b'{"text": "a cat", "k": 3}'
    headers = signed("POST", url, body)
    assert verify("POST", url, headers, body, secrets={KEY: SECRET}, region=REGION) is None
    names = dict(headers)
    assert names["X-Amz-Security-Token"] == TOKEN  # a session's token is sent and signed
    assert "content-type;host;x-amz-date;x-amz-security-token" in names["Authorization"]
    assert f"/{REGION}/execute-api/aws4_request" in names["Authorization"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"body": b'{"text": "a dog", "k": 3}'}, "another body"),
        ({"url": "http://127.0.0.1:3000/embed"}, "another path"),
        ({"method": "PUT"}, "another method"),
        ({"region": "us-east-1"}, "another region"),
        ({"secrets": {KEY: "not-the-secret"}}, "another secret"),
    ],
)
def test_a_signature_holds_only_for_the_request_it_signed(change: dict[str, Any], why: str) -> None:
    url, body = "http://127.0.0.1:3000/search", b'{"text": "a cat", "k": 3}'
    headers = signed("POST", url, body)
    check = {"method": "POST", "url": url, "body": body, "secrets": {KEY: SECRET}, "region": REGION, **change}
    refusal = verify(check["method"], check["url"], headers, check["body"], secrets=check["secrets"],
                     region=check["region"])  # fmt: skip
    assert refusal is not None and refusal.status == 403, why


def test_join_keeps_a_stage_path() -> None:
    assert join("https://x.execute-api.eu-west-1.amazonaws.com", "/search") == (
        "https://x.execute-api.eu-west-1.amazonaws.com/search"
    )
    assert join("https://api.example.com/prod/", "/model?x=1") == "https://api.example.com/prod/model?x=1"


def echo(event: dict[str, Any]) -> InvokeResult:
    body = {"route": event["routeKey"], "body": event.get("body"), "headers": sorted(event["headers"])}
    payload = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
    return InvokeResult(payload=payload, error=False, wall_ms=0.0)


@pytest.fixture
def front() -> Iterator[ApiGateway]:
    with ApiGateway(echo, routes=TEMPLATE_ROUTES, iam={KEY: SECRET}, region=REGION).start() as gateway:
        yield gateway


def test_the_proxy_is_let_through_an_iam_front_and_forwards_the_body(front: ApiGateway) -> None:
    proxy = ApiProxy(front.url, REGION, lambda: Credentials(KEY, SECRET, TOKEN).get_frozen_credentials())
    body = b'{"text": "a cat"}'
    headers = {"Content-Type": "application/json", "Cookie": "session=browser", "X-Clip-Gallery": "1"}
    response = proxy.forward("POST", "/search", headers, body)
    assert response.status == 200, response.body
    answer = response.json()
    assert answer["route"] == "POST /search" and answer["body"] == body.decode()
    # The browser's cookies and the page's own headers stay with the gallery.
    assert "cookie" not in answer["headers"] and "x-clip-gallery" not in answer["headers"]
    assert ("Content-Type", "application/json") in response.headers


def test_unsigned_or_wrongly_signed_requests_get_api_gateways_403(front: ApiGateway) -> None:
    unsigned = ApiProxy(front.url, REGION, None).forward("GET", "/model", {}, b"")
    assert (unsigned.status, unsigned.json()) == (403, {"message": "Forbidden"})
    wrong = ApiProxy(front.url, REGION, lambda: Credentials(KEY, "wrong", None)).forward("GET", "/model", {}, b"")
    assert wrong.status == 403 and "signature" in wrong.json()["message"]
    other_region = ApiProxy(front.url, "us-east-1", lambda: Credentials(KEY, SECRET, None))
    elsewhere = other_region.forward("GET", "/model", {}, b"")
    assert elsewhere.status == 403 and "region" in elsewhere.json()["message"]


def test_no_credentials_and_no_api_are_errors_in_the_apis_shape(front: ApiGateway) -> None:
    missing = ApiProxy(front.url, REGION, lambda: None).forward("GET", "/model", {}, b"")
    assert missing.status == 401 and missing.json()["error"]["code"] == "no_credentials"
    down = ApiProxy(f"http://127.0.0.1:{free_port()}", REGION, None, timeout=5).forward("GET", "/model", {}, b"")
    assert down.status == 502 and down.json()["error"]["code"] == "api_unreachable"
    assert down.json()["error"]["message"].startswith("GET http://127.0.0.1:")
