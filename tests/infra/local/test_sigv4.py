"""SigV4 verification (infra/local/sigv4.py): what API Gateway's AWS_IAM authorization checks, directly and
through the local HTTP API front, with botocore's signer and with awscurl (the README's client)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local.api_gateway import ApiGateway
from infra.local.sigv4 import MAX_SKEW, Refusal, verify
from tests.infra.local.functions import echo

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


# --- verify() itself, without the front -----------------------------------------------------------------------
URL = "http://127.0.0.1:3000/embed?x=1"
BODY = b'{"texts": ["a"]}'
NOW = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)


def check(headers: dict[str, str], *, body: bytes = BODY, url: str = URL, now: datetime = NOW) -> Refusal | None:
    """``verify`` of a request as the front receives it: the signer's headers plus the Host the client sent."""
    received = {"Host": "127.0.0.1:3000", **headers}
    return verify("POST", url, received.items(), body, secrets=KEYS, region="us-east-1", now=now)


def test_a_signature_is_checked_against_the_request_as_received() -> None:
    headers = signed_at(URL, BODY, NOW)
    assert check(headers) is None
    assert check(headers, body=b'{"texts": ["b"]}') == Refusal(
        403, "The request signature we calculated does not match the signature you provided."
    )
    assert check(headers, url=URL.replace("x=1", "x=2")) is not None  # the query is signed too
    assert check({k.lower(): v for k, v in headers.items()}) is None  # header names in any case


def test_the_clock_skew_allowed_is_five_minutes_either_way() -> None:
    headers = signed_at(URL, BODY, NOW)
    assert timedelta(minutes=5) == MAX_SKEW
    for skew in (MAX_SKEW, -MAX_SKEW):
        assert check(headers, now=NOW + skew) is None
    for skew in (MAX_SKEW + timedelta(seconds=1), -MAX_SKEW - timedelta(seconds=1)):
        refusal = check(headers, now=NOW + skew)
        assert refusal is not None and refusal.message.startswith("Signature expired or not yet valid")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Authorization": "Bearer token"}, "requires 'Credential', 'Signature' and 'SignedHeaders'"),
        ({"X-Amz-Date": "yesterday"}, "requires existence of either a 'X-Amz-Date' or a 'Date' header"),
        ({"X-Amz-Date": "20261126T080000Z"}, "Signature expired"),  # not the day the credential names
    ],
)
def test_a_malformed_request_is_refused_saying_what_is_wrong(change: dict[str, str], message: str) -> None:
    refusal = check({**signed_at(URL, BODY, NOW), **change})
    assert refusal is not None and refusal.status == 403 and message in refusal.message


def test_the_host_must_be_signed_and_every_signed_header_present() -> None:
    headers = signed_at(URL, BODY, NOW)
    auth = headers["Authorization"]
    assert "SignedHeaders=content-type;host;x-amz-date," in auth
    unsigned_host = {
        **headers,
        "Authorization": auth.replace("content-type;host;x-amz-date", "content-type;x-amz-date"),
    }
    assert check(unsigned_host) == Refusal(
        403, "The request signature we calculated does not match the signature you provided."
    )
    without_a_signed_header = {k: v for k, v in headers.items() if k != "Content-Type"}
    assert check(without_a_signed_header) is not None
