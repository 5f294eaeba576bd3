"""SigV4 verification for the local API front: what API Gateway's AWS_IAM authorization checks before a
route's integration runs, so that clients (awscurl, boto3, the gallery's proxy) are tested against the same
refusals a deployed stack gives.

API Gateway recomputes the signature of the request as received (method, path, query, the headers named in
``SignedHeaders``, the payload hash) with the caller's secret key and compares; it refuses with 403 and
``{"message": ...}`` when the Authorization header is missing ("Missing Authentication Token" for an
unknown route, "Forbidden" otherwise), malformed, for another service or region, too old or from the future
(more than 5 minutes), or when the signatures differ. Here the secret keys are the local stack's (a mapping
from access key id to secret key); who may call what (IAM policies) is not evaluated: a valid signature by a
known key is allowed, as an ``execute-api:Invoke`` grant on ``*`` would.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
MAX_SKEW = timedelta(minutes=5)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def verify(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    secrets: Mapping[str, str],
    region: str,
    now: datetime | None = None,
) -> Refusal | None:
    """None when the request carries a valid SigV4 signature for ``execute-api`` in ``region`` by a key of
    ``secrets``; else API Gateway's refusal. ``url``: scheme, the Host the client signed, path and query."""
    given = {name.lower(): value for name, value in headers}
    auth = given.get("authorization")
    if not auth:
        return Refusal(403, "Forbidden")
    m = _AUTH.match(auth.strip())
    if m is None:
        return Refusal(403, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters")
    if m["service"] != SERVICE or m["region"] != region:
        return Refusal(403, f"Credential should be scoped to a valid region and service {SERVICE!r} in {region!r}")
    secret = secrets.get(m["key"])
    if secret is None:
        return Refusal(403, "The security token included in the request is invalid.")
    stamp = given.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return Refusal(403, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header")
    if stamp[:8] != m["date"] or abs((now or datetime.now(UTC)) - when) > MAX_SKEW:
        return Refusal(403, "Signature expired or not yet valid (more than 5 minutes from the server's time)")
    signed = m["signed"].split(";")
    if "host" not in signed or any(h not in given for h in signed):
        return Refusal(403, "The request signature we calculated does not match the signature you provided.")
    request = AWSRequest(method=method.upper(), url=url, data=body, headers={h: given[h] for h in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(m["key"], secret, given.get("x-amz-security-token")), SERVICE, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, m["signature"]):
        return Refusal(403, "The request signature we calculated does not match the signature you provided.")
    return None
