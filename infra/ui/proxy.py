"""The gallery's API proxy: one request of the page, forwarded to the stack's API and signed there.

The HTTP API uses IAM auth (``ApiAuth=AWS_IAM``, the template's default): every request carries a SigV4
signature for the service ``execute-api`` over its method, path, query, ``host``, ``content-type`` and the
hash of its body, made with the caller's credentials (what awscurl and the AWS SDKs send, and what API
Gateway, or the local front's ``infra.local.sigv4.verify``, recomputes). The gallery signs with botocore's
``SigV4Auth`` and the credentials of the user's boto3 session (frozen per request, so refreshing credentials,
SSO or an assumed role, stay valid); the browser never sees them.

An API that does not answer becomes a 502 ``{"error": {"code": "api_unreachable", ...}}``, in the API's own
error shape, so the page shows it like any other error.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

SERVICE = "execute-api"
# Request headers the page may pass on (anything else, cookies included, stays with the gallery).
FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
# Response headers worth passing back (API Gateway's request id and error type help a bug report).
FORWARDED_RESPONSE_HEADERS = ("content-type", "x-amzn-requestid", "x-amzn-errortype", "apigw-requestid")
DEFAULT_TIMEOUT = 120.0  # seconds: the local API function's first request includes its INIT (the model load)

# Returns the credentials to sign with (anything with access_key, secret_key and token), or None: unsigned.
CredentialSource = Callable[[], Any]


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or its text when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return self.body.decode("utf-8", errors="replace")


def error_response(status: int, code: str, message: str) -> ApiResponse:
    """A response in the API's error shape, made by the gallery itself."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return ApiResponse(status, [("Content-Type", "application/json")], body)


def sign(
    method: str, url: str, headers: Mapping[str, str], body: bytes, *, credentials: Any, region: str
) -> dict[str, str]:
    """``headers`` plus SigV4's (``Authorization``, ``X-Amz-Date``, ``X-Amz-Security-Token`` with a session
    token) for ``execute-api`` in ``region``. ``host`` is signed as ``url`` names it: send the request there."""
    request = AWSRequest(method=method.upper(), url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def join(base_url: str, path: str) -> str:
    """The API's URL for ``path`` (a route with its query string): ``base_url`` may carry a stage path."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


@dataclass
class ApiProxy:
    """Forwards requests to ``base_url`` (the stack's ``ApiUrl``), signed with ``credentials()`` for
    ``region``; ``credentials`` None: unsigned (an API deployed with ``ApiAuth=NONE``)."""

    base_url: str
    region: str
    credentials: CredentialSource | None
    timeout: float = DEFAULT_TIMEOUT

    def forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> ApiResponse:
        url = join(self.base_url, path)
        given = {k.lower(): v for k, v in headers.items()}
        outgoing = {name.title(): given[name] for name in FORWARDED_REQUEST_HEADERS if name in given}
        if self.credentials is not None:
            creds = self.credentials()
            if creds is None:
                return error_response(
                    401, "no_credentials", "no AWS credentials to sign the request with (aws configure, AWS_PROFILE)"
                )
            outgoing = sign(method, url, outgoing, body, credentials=creds, region=self.region)
        return send(method, url, outgoing, body, self.timeout)


def send(method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> ApiResponse:
    """One HTTP(S) request as it was signed: the same path and query, the ``Host`` of ``url``."""
    split = urlsplit(url)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    conn: http.client.HTTPConnection
    if split.scheme == "https":
        conn = http.client.HTTPSConnection(split.netloc, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(split.netloc, timeout=timeout)
    try:
        conn.request(method.upper(), target, body=body or None, headers=dict(headers))
        response = conn.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return error_response(502, "api_unreachable", f"{method.upper()} {url} failed: {exc or type(exc).__name__}")
    finally:
        conn.close()
    kept = [(k, v) for k, v in response.getheaders() if k.lower() in FORWARDED_RESPONSE_HEADERS]
    return ApiResponse(response.status, kept, payload)
