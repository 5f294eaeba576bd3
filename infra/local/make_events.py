"""Write the sample events in events/ (real AWS shapes, for `sam local invoke -e` and the tests).

    .venv/bin/python infra/local/make_events.py            # rewrites events/*.json

The shapes follow what each service sends (AWS documentation examples, field for field): an S3 put
notification wrapped in an SQS message (the template's topology), the same notification delivered directly,
an EventBridge "Object Created" event, and HTTP API (payload format 2.0, IAM-authorized) requests to
POST /embed: a real photo as a base64 body, a body that is not valid base64 (400 invalid_base64) and
bytes that are no image (422). The photo is scikit-learn's china.jpg, scaled down to keep the event small;
without scikit-learn a synthetic gradient stands in.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = f"clip-{ACCOUNT}-6a1c2e80-8c1e-11ef-9d3b-0a1b2c3d4e5f"
KEY = "photos/2024/china palace.jpg"
KEY_ENCODED = "photos/2024/china+palace.jpg"  # S3 notifications URL-encode keys, space as "+"
SIZE = 183_456
ETAG = "0f343b0931126a20f133d67c2b018a3b"
SEQUENCER = "0066E5B2A4C3D1E2F3"
TIME = "2026-11-27T08:00:00.000Z"
API_ID = "a1b2c3d4e5"


def s3_record(event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": TIME,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLEUSERID1234"},
        "requestParameters": {"sourceIPAddress": "198.51.100.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "clip-lambda-images",
            "bucket": {
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{BUCKET}",
            },
            "object": {"key": KEY_ENCODED, "size": SIZE, "eTag": ETAG, "sequencer": SEQUENCER},
        },
    }


def sqs_event() -> dict[str, Any]:
    body = json.dumps({"Records": [s3_record()]})
    return {
        "Records": [
            {
                "messageId": "2e1424d4-f796-459a-8184-9c92662be6da",
                "receiptHandle": "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq/example/receipt/handle==",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795766400123",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1795766400140",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:clip-lambda-ImagesQueue-AbCdEf123456",
                "awsRegion": REGION,
            }
        ]
    }


def eventbridge_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": TIME[:-5] + "Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": {"key": "photos/2024/flower.jpg", "size": SIZE, "etag": ETAG, "sequencer": SEQUENCER},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "198.51.100.7",
            "reason": "PutObject",
        },
    }


def api_event(body: str, content_type: str, *, is_base64: bool = True) -> dict[str, Any]:
    host = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
    return {
        "version": "2.0",
        "routeKey": "POST /embed",
        "rawPath": "/embed",
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "content-length": str(len(base64.b64decode(body)) if is_base64 and _is_b64(body) else len(body)),
            "content-type": content_type,
            "host": host,
            "user-agent": "python-requests/2.32.3",
            "x-amz-date": "20261127T080000Z",
            "x-amzn-trace-id": "Root=1-6746d2c0-3b5f1c2d4e6f708192a3b4c5",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "authorizer": {
                "iam": {
                    "accessKey": "AKIAIOSFODNN7EXAMPLE",
                    "accountId": ACCOUNT,
                    "callerId": "AIDAEXAMPLEUSERID1234",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": f"arn:aws:iam::{ACCOUNT}:user/embedder",
                    "userId": "AIDAEXAMPLEUSERID1234",
                }
            },
            "domainName": host,
            "domainPrefix": API_ID,
            "http": {
                "method": "POST",
                "path": "/embed",
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "python-requests/2.32.3",
            },
            "requestId": "Bq3xEhc3IAMEVxQ=",
            "routeKey": "POST /embed",
            "stage": "$default",
            "time": "27/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1795766400000,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _is_b64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def sample_jpeg() -> bytes:
    try:
        from sklearn.datasets import load_sample_image

        img = Image.fromarray(load_sample_image("china.jpg"))
    except ImportError:
        img = Image.linear_gradient("L").resize((427, 320)).convert("RGB")
    img = img.resize((320, 240), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def env_vars() -> dict[str, Any]:
    # `sam local invoke --env-vars`: every AWS endpoint is loopback *inside the container*, where nothing
    # listens, so a sample event can never reach real AWS (connections are refused at once).
    common = {
        "TABLE_NAME": "clip-lambda-local",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "ClipLambdaLocal",
        # `sam local invoke` runs the image the tests build around their random-init model (no checkpoint is
        # downloaded offline): INIT refuses an untrained model unless told it is on purpose (handler.runtime;
        # the template's AllowUntrainedModel, "false" in a deployment).
        "ALLOW_UNTRAINED_MODEL": "true",
    }
    return {"S3Function": dict(common), "ApiFunction": dict(common)}


def event_files() -> dict[str, Any]:
    """events/ as this script writes it: file name → content."""
    jpeg = base64.b64encode(sample_jpeg()).decode()
    return {
        "sqs-s3-put.json": sqs_event(),
        "s3-put.json": {"Records": [s3_record()]},
        "eventbridge-object-created.json": eventbridge_event(),
        "api-embed.json": api_event(jpeg, "image/jpeg"),
        "api-malformed.json": api_event("this is not base64!", "image/jpeg"),
        "api-not-an-image.json": api_event(base64.b64encode(b"plain text\n").decode(), "image/jpeg"),
        "env.json": env_vars(),
    }


def main() -> int:
    out = ROOT / "events"
    out.mkdir(exist_ok=True)
    for name, data in event_files().items():
        (out / name).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote events/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
