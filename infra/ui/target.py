"""What the gallery talks to: the stack's API, its bucket and table, the region and the credentials.

Three ways to name it (``clip-lambda ui``):

- the local stack of ``clip-lambda local`` (the default): its API front (127.0.0.1:3000), its moto server for
  S3 and DynamoDB (127.0.0.1:5000), its bucket and table, and its credentials;
- ``--stack NAME``: a deployed stack, whose ``ApiUrl``, ``BucketName`` and ``TableName`` outputs are read
  with CloudFormation's DescribeStacks, with the user's boto3 session (its credentials, its region, and
  ``AWS_ENDPOINT_URL`` honoured as botocore does: tests point it at moto);
- ``--api URL``: an API directly, with the user's session, and ``--bucket``/``--table`` if known.

How uploads reach the bucket (``upload_mode``): the browser PUTs to a presigned URL ("direct") when it can,
that is when the bucket's CORS configuration admits a PUT with a ``Content-Type`` from the gallery's origin,
or for the local stack, whose moto server answers CORS for every origin; otherwise the page sends the file
to the gallery, which puts it into the bucket itself ("server"). ``RECOMMENDED_CORS`` is the rule a deployed
bucket needs for direct uploads from any gallery port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

UploadMode = Literal["direct", "server"]
LOCAL_API_URL = "http://127.0.0.1:3000"  # infra.local.stack.DEFAULT_API_PORT
LOCAL_ENDPOINT = "http://127.0.0.1:5000"  # infra.local.stack.DEFAULT_MOTO_PORT
# The bucket's CORS rule for direct uploads from the gallery, on whichever port it runs: a PUT of the file
# with its Content-Type (the presigned URL carries the authorization; the origins only let a browser send it).
# As template.yaml's ImagesBucket CorsConfiguration: the same rule, MaxAgeSeconds named MaxAge there.
RECOMMENDED_CORS: dict[str, Any] = {
    "CORSRules": [
        {
            "AllowedMethods": ["PUT"],
            "AllowedOrigins": ["http://127.0.0.1:*", "http://localhost:*"],
            "AllowedHeaders": ["content-type"],
            "MaxAgeSeconds": 3000,
        }
    ]
}
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class TargetError(Exception):
    """The target cannot be used: the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    api_url: str
    region: str
    session: Any  # boto3.session.Session: the credentials that sign and presign
    bucket: str | None = None
    table: str | None = None
    endpoint_url: str | None = None  # S3 and DynamoDB (the local stack's moto); None: the session's own
    label: str = ""
    local: bool = False
    signed: bool = True  # False: an API deployed with ApiAuth=NONE

    def client(self, service: str) -> Any:
        from botocore.config import Config

        options: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 3}}
        if service == "s3":
            options["signature_version"] = "s3v4"  # presigned URLs: SigV4, which every region accepts
        return self.session.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, config=Config(**options)
        )

    def credentials(self) -> Any:
        """The session's credentials right now (frozen: refreshing ones stay valid), or None."""
        creds = self.session.get_credentials()
        return None if creds is None else creds.get_frozen_credentials()


def local_target(
    api_url: str = LOCAL_API_URL,
    endpoint_url: str = LOCAL_ENDPOINT,
    bucket: str | None = None,
    table: str | None = None,
) -> Target:
    """The local stack (``clip-lambda local``): its names, its credentials, its region."""
    import boto3

    from infra.local.moto_stack import CREDENTIALS, REGION, StackNames

    names = StackNames()
    session = boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS.get("AWS_SESSION_TOKEN"),
        region_name=REGION,
    )
    return Target(
        api_url=api_url,
        region=REGION,
        session=session,
        bucket=bucket or names.bucket,
        table=table or names.table,
        endpoint_url=endpoint_url,
        label=f"the local stack ({api_url}, moto at {endpoint_url})",
        local=True,
    )


def stack_outputs(cfn: Any, name: str) -> dict[str, str]:
    """The outputs of stack ``name`` (DescribeStacks), or a ``TargetError`` saying what went wrong."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise TargetError(f"stack {name}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:  # no credentials, no region, no connection
        raise TargetError(f"stack {name}: {exc}") from exc
    if not stacks:
        raise TargetError(f"stack {name} does not exist")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def stack_target(name: str, session: Any) -> Target:
    """A deployed stack, from its outputs: ``ApiUrl`` (required), ``BucketName`` and ``TableName``."""
    region = session.region_name
    if not region:
        raise TargetError("no AWS region: pass --region or set AWS_REGION (the stack's region)")
    outputs = stack_outputs(session.client("cloudformation", region_name=region), name)
    if not outputs.get("ApiUrl"):
        raise TargetError(f"stack {name} has no ApiUrl output: is it a clip-lambda stack?")
    return Target(
        api_url=outputs["ApiUrl"],
        region=region,
        session=session,
        bucket=outputs.get("BucketName") or None,
        table=outputs.get("TableName") or None,
        label=f"stack {name} ({region})",
    )


def api_target(url: str, session: Any, bucket: str | None = None, table: str | None = None) -> Target:
    """An API by its URL; the region is the URL's (``*.execute-api.<region>.amazonaws.com``) or the session's."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise TargetError(f"--api {url}: not an http(s) URL")
    match = _EXECUTE_API_HOST.match(split.hostname or "")
    region = match["region"] if match else session.region_name
    if not region:
        raise TargetError("no AWS region: pass --region or set AWS_REGION (the API's region)")
    return Target(api_url=url, region=region, session=session, bucket=bucket, table=table, label=f"API {url}")


def _matches(pattern: str, value: str) -> bool:
    """S3's CORS matching: case-insensitive for headers and methods as given, one ``*`` wildcard at most."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None


def cors_allows(rules: Iterable[Mapping[str, Any]], origin: str, method: str, headers: Iterable[str]) -> bool:
    """Whether a bucket's CORS rules (GetBucketCors' ``CORSRules``) admit a request from ``origin`` with
    ``method`` and these request headers, as S3 evaluates a preflight: one rule must admit all three."""
    wanted = [h.lower() for h in headers]
    for rule in rules:
        if method.upper() not in [m.upper() for m in rule.get("AllowedMethods", [])]:
            continue
        if not any(_matches(o, origin) for o in rule.get("AllowedOrigins", [])):
            continue
        allowed = [h.lower() for h in rule.get("AllowedHeaders", [])]
        if all(any(_matches(a, h) for a in allowed) for h in wanted):
            return True
    return False


def upload_mode(target: Target, origin: str, s3: Any = None) -> tuple[UploadMode, str]:
    """How the page uploads to ``target``'s bucket from ``origin``, and why (one line for the user)."""
    if target.local:
        return "direct", "the browser PUTs to presigned URLs (moto's server answers CORS for every origin)"
    if not target.bucket:
        return "server", "no bucket named: uploads are off"
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        rules = (s3 or target.client("s3")).get_bucket_cors(Bucket=target.bucket).get("CORSRules", [])
    except (ClientError, BotoCoreError) as exc:  # NoSuchCORSConfiguration, AccessDenied, ...
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
        rules, why = [], f"GetBucketCors: {code}"
    else:
        why = "its CORS rules do not admit a PUT with Content-Type from this origin"
    if cors_allows(rules, origin, "PUT", ["content-type"]):
        return "direct", f"the browser PUTs to presigned URLs (the bucket's CORS admits {origin})"
    return "server", f"uploads go through this server ({why}; infra/ui/target.py RECOMMENDED_CORS lets the browser)"
