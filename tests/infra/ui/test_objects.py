"""The gallery's S3 and DynamoDB side (infra/ui/objects.py): upload keys that are safe in a key and a URL
and never collide, presigned URLs (SigV4, the PUT's Content-Type signed), and an object's item read as the
page shows it (stubbed DynamoDB)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.config import Config
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from infra.ui import gallery, objects
from tests.infra.ui.conftest import session


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("my holiday photo.jpg", "uploads/my-holiday-photo-t0k3n.jpg"),
        ("../../etc/passwd", "uploads/passwd-t0k3n"),
        ("C:\\Users\\me\\IMG 0001.JPEG", "uploads/IMG-0001-t0k3n.jpeg"),
        ("фото.png", "uploads/image-t0k3n.png"),
        ("", "uploads/image-t0k3n"),
        (".hidden", "uploads/hidden-t0k3n"),
    ],
)
def test_an_upload_key_is_the_files_name_made_safe(name: str, key: str) -> None:
    assert objects.upload_key(name, token="t0k3n") == key


@given(st.text(max_size=300))
def test_every_upload_key_is_one_the_server_accepts_back(name: str) -> None:
    key = objects.upload_key(name)
    assert gallery._UPLOAD_KEY.fullmatch(key), key
    assert objects.upload_key(name) != key  # a random token: never an earlier object's key


def test_presigned_urls_are_sigv4_and_a_put_signs_its_content_type() -> None:
    s3 = session().client("s3", config=Config(signature_version="s3v4"))
    put = urlsplit(objects.presign_put(s3, "clip-b", "uploads/a b.jpg", "image/jpeg"))
    query = parse_qs(put.query)
    assert put.path == "/uploads/a%20b.jpg" and put.netloc.startswith("clip-b.s3.")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-SignedHeaders"] == ["content-type;host"]
    get = parse_qs(urlsplit(objects.presign_get(s3, "clip-b", "cats/tom.jpg", expires=60)).query)
    assert get["X-Amz-SignedHeaders"] == ["host"] and get["X-Amz-Expires"] == ["60"]


def item_request(key: str) -> dict[str, Any]:
    names = {"#0": "embedded_at", "#1": "error_code", "#2": "error_message", "#3": "model", "#4": "width",
             "#5": "height"}  # fmt: skip
    return {"TableName": "t", "Key": {"pk": {"S": f"s3://b/{key}"}}, "ConsistentRead": True,
            "ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "state"),
    [
        (None, {"state": "pending"}),
        ({"pk": {"S": "s3://b/uploads/a.jpg"}, "model": {"S": "m"}}, {"state": "pending"}),
        (
            {"embedded_at": {"S": "2026-01-01T00:00:00Z"}, "model": {"S": "m"}, "width": {"N": "640"},
             "height": {"N": "480"}},
            {"state": "embedded", "model": "m", "width": 640, "height": 480},
        ),
        (
            {"error_code": {"S": "not_an_image"}, "error_message": {"S": "not a supported image"}},
            {"state": "failed", "error": {"code": "not_an_image", "message": "not a supported image"}},
        ),
    ],
)  # fmt: skip
def test_an_items_state_is_what_the_page_shows(stored: dict[str, Any] | None, state: dict[str, Any]) -> None:
    ddb = session().client("dynamodb")
    with Stubber(ddb) as stub:
        stub.add_response("get_item", {"Item": stored} if stored else {}, item_request("uploads/a.jpg"))
        assert objects.item_state(ddb, "t", "b", "uploads/a.jpg") == state
        stub.assert_no_pending_responses()
