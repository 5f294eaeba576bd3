"""The API function: routes, the JSON error contract and its statuses, store (the OpenAPI document:
test_openapi.py; the error table: test_errors.py)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from handler import api
from handler.item import decode_vector
from tests.handler.helpers import BUCKET, FakeEngine, http_event, load_event
from tests.imaging import encode, png_bomb, resized_photo

PNG = encode(resized_photo((200, 150)))


def call(event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(event, context)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def embed_json(payload: Any, context: Any) -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return call(http_event("POST", "/embed", body, "application/json"), context)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(status_body: tuple[int, dict[str, Any]], status: int, code: str) -> None:
    got_status, body = status_body
    assert (got_status, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    assert set(body) == {"error"}


def test_raw_image_body(rt, context, photo) -> None:
    status, body = call(http_event("POST", "/embed", photo, "image/jpeg"), context)
    assert status == 200
    assert (body["model"], body["dim"], body["width"], body["height"]) == ("fake/clip-test", 512, 640, 427)
    vec = np.asarray(body["embedding"], dtype=np.float32)
    np.testing.assert_array_equal(vec, FakeEngine.vector_for(photo))  # float32 survives JSON exactly
    assert abs(float(np.linalg.norm(vec)) - 1) < 1e-5 and body["norm"] == 10.5


def test_sam_http_api_sample_routes_to_embed(rt, context, photo) -> None:
    ev = load_event("apigateway-http-api-proxy.json")  # the SAM sample, body and path replaced
    ev["rawPath"] = ev["requestContext"]["http"]["path"] = "/embed"
    ev["headers"]["Content-Type"] = "image/png; charset=binary"
    ev["body"], ev["isBase64Encoded"] = b64(photo), True
    status, body = call(ev, context)
    assert status == 200 and len(body["embedding"]) == 512


def test_octet_stream_is_an_image(rt, context, photo) -> None:
    assert call(http_event("POST", "/embed", photo, "application/octet-stream"), context)[0] == 200


def test_json_batch_in_order_with_errors_in_place(rt, context, photo, photo2) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="dir/in s3.jpg", Body=photo2)
    status, body = embed_json(
        {
            "images": [
                {"data": b64(photo)},
                {"s3": f"s3://{BUCKET}/dir/in s3.jpg"},
                {"data": b64(b"plain text")},
                {"data": "!!!not base64!!!"},
                {"s3": f"s3://{BUCKET}/missing.jpg"},
                {"s3": "https://example.com/x.jpg"},
            ]
        },
        context,
    )
    assert status == 200 and (body["model"], body["dim"]) == ("fake/clip-test", 512)
    r = body["results"]
    assert [x["index"] for x in r] == list(range(6))
    np.testing.assert_array_equal(np.float32(r[0]["embedding"]), FakeEngine.vector_for(photo))
    np.testing.assert_array_equal(np.float32(r[1]["embedding"]), FakeEngine.vector_for(photo2))
    assert r[1]["s3"] == f"s3://{BUCKET}/dir/in s3.jpg" and "stored" not in r[1]
    assert [(x.get("status"), x.get("error", {}).get("code")) for x in r[2:]] == [
        (422, "not_an_image"),
        (400, "invalid_base64"),
        (404, "s3_not_found"),
        (400, "invalid_s3_uri"),
    ]
    assert [x.get("s3") for x in r[4:]] == [f"s3://{BUCKET}/missing.jpg", "https://example.com/x.jpg"]  # named
    assert r[3]["error"]["message"].startswith("images[3].data is not valid base64")
    assert rt.sink.get(f"s3://{BUCKET}/dir/in s3.jpg") is None  # store defaults to false


def test_store_writes_the_item_the_s3_function_would(rt, context, photo, photo2) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="a b.jpg", Body=photo, ContentType="image/jpeg")
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/a b.jpg"}], "store": True}, context)
    assert status == 200 and body["results"][0]["stored"] is True
    item = rt.sink.get(f"s3://{BUCKET}/a b.jpg").attributes
    np.testing.assert_array_equal(decode_vector(item["embedding"]), FakeEngine.vector_for(photo))
    assert (item["size"], item["content_type"], item["model"]) == (len(photo), "image/jpeg", "fake/clip-test")
    assert item["etag"] == rt.s3.head_object(Bucket=BUCKET, Key="a b.jpg")["ETag"].strip('"')
    # An S3 event's item (sequencer order) beats the API's clock order: same bytes count as stored,
    # and the newer item is left alone.
    rt.sink.client.update_item(
        TableName=rt.sink.table_name,
        Key={"pk": {"S": f"s3://{BUCKET}/a b.jpg"}},
        UpdateExpression="SET order_key = :k",
        ExpressionAttributeValues={":k": {"S": "1" + "0" * 64}},
    )
    assert (
        embed_json({"images": [{"s3": f"s3://{BUCKET}/a b.jpg"}], "store": True}, context)[1]["results"][0]["stored"]
        is True
    )
    rt.s3.put_object(Bucket=BUCKET, Key="a b.jpg", Body=photo2)  # other bytes: its own S3 event will store them
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/a b.jpg"}], "store": True}, context)
    assert body["results"][0]["stored"] is False and len(body["results"][0]["embedding"]) == 512
    np.testing.assert_array_equal(rt.sink.get(f"s3://{BUCKET}/a b.jpg").vector, FakeEngine.vector_for(photo))


def test_s3_reference_access_denied_is_403(rt, context, monkeypatch) -> None:
    def denied(**kw: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
            "GetObject",
        )

    monkeypatch.setattr(rt.s3, "get_object", denied)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/secret.jpg"}]}, context)
    assert status == 200 and body["results"][0]["status"] == 403
    assert body["results"][0]["error"]["code"] == "s3_access_denied"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"", "image/jpeg", 400, "empty_image"),
        (None, "image/jpeg", 400, "empty_image"),
        ("truncated", "image/jpeg", 422, "corrupt_image"),
        ("truncated_png", "image/png", 422, "corrupt_image"),
        (b"%PDF-1.7 a document", "image/jpeg", 422, "not_an_image"),
        ("huge", "image/jpeg", 413, "image_too_large"),
        ("bomb", "image/png", 413, "too_many_pixels"),
        ("photo", "text/plain", 415, "unsupported_media_type"),
        ("photo", None, 415, "unsupported_media_type"),
        ("photo", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_raw_body_errors(rt, context, photo, body, content_type, status, code) -> None:
    body = {
        "truncated": photo[: len(photo) // 3],
        "huge": b"\xff\xd8\xff" + b"\0" * rt.settings.limits.max_bytes,
        "bomb": png_bomb(),
        "photo": photo,
        "truncated_png": PNG[: len(PNG) // 2],
    }.get(body, body)  # type: ignore[arg-type]
    assert_error(call(http_event("POST", "/embed", body, content_type), context), status, code)


def test_raw_body_that_is_not_base64(rt, context) -> None:
    ev = http_event("POST", "/embed", "x", "image/jpeg")
    ev["body"], ev["isBase64Encoded"] = "%%%%", True
    status_body = call(ev, context)
    assert_error(status_body, 400, "invalid_base64")
    assert status_body[1]["error"]["message"].startswith("request body is not valid base64")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ("{not json", 400, "invalid_request"),
        ("[]", 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"images": []}, 400, "invalid_request"),
        ({"images": [{}]}, 400, "invalid_request"),
        ({"images": [{"data": "", "s3": "s3://b/k"}]}, 400, "invalid_request"),
        ({"images": [{"data": "aGk="}], "extra": 1}, 400, "invalid_request"),
        ({"images": [{"data": "aGk="}] * 9}, 413, "too_many_images"),
    ],
)
def test_json_body_errors(rt, context, payload, status, code) -> None:
    assert_error(embed_json(payload, context), status, code)


def test_json_body_sent_base64(rt, context, photo) -> None:
    ev = http_event(
        "POST",
        "/embed",
        json.dumps({"images": [{"data": b64(photo)}]}),
        "application/json",
        base64_encoded=True,
    )
    status, body = call(ev, context)
    assert status == 200 and len(body["results"][0]["embedding"]) == 512


def test_model_and_health(rt, context) -> None:
    status, body = call(http_event("GET", "/model"), context)
    assert status == 200
    assert (body["model"], body["dim"], body["manifest"]["model_id"]) == (
        "fake/clip-test",
        512,
        "fake/clip-test",
    )
    assert body["limits"] == {
        "max_image_bytes": 2_000_000,
        "max_image_pixels": 20_000_000,
        "max_batch_images": 8,
    }
    assert call(http_event("GET", "/health"), context) == (
        200,
        {"status": "ok", "model": "fake/clip-test", "dim": 512},
    )


def test_unknown_route_is_json_404(rt, context) -> None:
    assert_error(call(http_event("GET", "/nope"), context), 404, "not_found")


def test_bug_is_500_without_stack_trace(rt, context, photo, monkeypatch, logs) -> None:
    def boom(data: bytes) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(rt.engine, "embed_one", boom)
    response = api.lambda_handler(http_event("POST", "/embed", photo, "image/jpeg"), context)
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "secret" not in response["body"]
    [log] = [x for x in logs() if x.get("message") == "unhandled error"]
    assert "secret internal detail" in log["exception"]  # the detail goes to the log only


def test_error_metric_and_correlation_id(rt, context, capsys, logs) -> None:
    call(http_event("POST", "/embed", b"nope", "image/jpeg"), context)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["code"] for x in lines if "EmbedFailures" in x] == ["not_an_image"]
    [log] = [x for x in logs() if x.get("message") == "request rejected"]
    assert log["correlation_id"] == "id" and log["error_code"] == "not_an_image"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://my bucket/key.jpg",  # a space
        "s3://bucket:with:colons/key.jpg",
        "s3://" + "b" * 300 + "/key.jpg",
        "s3://bücket/key.jpg",  # non-ASCII
        "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/key.jpg",  # access-point ARNs are not accepted
        "s3:///key.jpg",
        f"s3://{BUCKET}/",
        f"s3://{BUCKET}/" + "k" * 1025,
        "http://example.com/x.jpg",
        f"gs://{BUCKET}/key.jpg",  # another scheme of the same length: not read as s3://
    ],
)
def test_malformed_s3_references_are_400_not_503(rt, context, monkeypatch, uri) -> None:
    monkeypatch.setattr(rt.s3, "get_object", lambda **kw: pytest.fail("malformed reference reached S3"))
    status, body = embed_json({"images": [{"s3": uri}]}, context)
    assert status == 200
    assert (body["results"][0]["status"], body["results"][0]["error"]["code"]) == (400, "invalid_s3_uri")


def test_an_invalid_s3_reference_says_what_is_wrong(rt, context) -> None:
    status, body = embed_json({"images": [{"s3": "s3://my bucket/key.jpg"}]}, context)
    assert status == 200 and body["results"][0]["error"]["code"] == "invalid_s3_uri"
    assert "'my bucket'" in body["results"][0]["error"]["message"]


def test_a_reference_botocore_refuses_is_400_for_its_image(rt, context, photo, monkeypatch) -> None:
    """A name our own check lets through but botocore refuses before sending (ParamValidationError): the
    caller's input, so a 400 on that image with the reference named, never a 503 or a failed request."""
    from botocore.exceptions import ParamValidationError

    def refused(**kw: Any) -> Any:
        raise ParamValidationError(report="Invalid bucket name")

    monkeypatch.setattr(rt.s3, "get_object", refused)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/odd.jpg"}, {"data": b64(photo)}]}, context)
    assert status == 200
    first, second = body["results"]
    assert (first["status"], first["error"]["code"]) == (400, "invalid_s3_uri")
    assert f"s3://{BUCKET}/odd.jpg" in first["error"]["message"]
    assert len(second["embedding"]) == 512


def test_s3_references_outside_the_allowed_buckets_are_403(rt, context, monkeypatch) -> None:
    monkeypatch.setattr(rt.s3, "get_object", lambda **kw: pytest.fail("a foreign bucket reached S3"))
    status, body = embed_json({"images": [{"s3": "s3://someone-elses-bucket/payroll.jpg"}]}, context)
    assert status == 200
    assert (body["results"][0]["status"], body["results"][0]["error"]["code"]) == (403, "s3_bucket_not_allowed")


def test_no_allowed_bucket_means_no_s3_references(rt, context, photo) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="p.jpg", Body=photo)
    rt.settings = replace(rt.settings, allowed_buckets=())
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/p.jpg"}]}, context)
    assert status == 200 and body["results"][0]["error"]["code"] == "s3_bucket_not_allowed"


def test_store_can_be_turned_off(rt, context, photo) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="p.jpg", Body=photo)
    rt.settings = replace(rt.settings, allow_store=False)
    assert_error(
        embed_json({"images": [{"s3": f"s3://{BUCKET}/p.jpg"}], "store": True}, context), 403, "store_disabled"
    )
    assert rt.sink.get(f"s3://{BUCKET}/p.jpg") is None
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/p.jpg"}]}, context)  # reading still works
    assert status == 200 and len(body["results"][0]["embedding"]) == 512


def test_store_ignores_inline_images(rt, context, photo) -> None:
    """store=true writes items for s3 references only: an inline image has no object to store under."""
    status, body = embed_json({"images": [{"data": b64(photo)}], "store": True}, context)
    assert status == 200 and len(body["results"][0]["embedding"]) == 512
    assert "stored" not in body["results"][0] and "error" not in body["results"][0]


def test_text_body_with_a_lone_surrogate_is_400(rt, context) -> None:
    event = http_event("POST", "/embed", '{"images": [{"data": "\ud800"}]}', "application/json")
    assert_error(call(event, context), 400, "invalid_body")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("rawPath"),  # found by the event fuzzer: a KeyError inside the router
        lambda e: e.update(headers={"content-type": None}),
        lambda e: e.update(queryStringParameters={"k": None}),
        lambda e: e.update(isBase64Encoded="no"),
        lambda e: e["requestContext"]["http"].update(sourceIp={"not": "an ip"}),
        lambda e: e.update(body=12),
    ],
)
def test_events_api_gateway_never_sends_are_400(rt, context, photo, mutate) -> None:
    event = http_event("POST", "/embed", photo, "image/jpeg")
    mutate(event)
    assert_error(call(event, context), 400, "invalid_request")


def test_batch_limit_is_inclusive(rt, context, photo) -> None:
    """MAX_BATCH_IMAGES (8 here) images are one batch; one more is a 413."""
    image = {"data": b64(photo)}
    status, body = embed_json({"images": [image] * rt.settings.max_batch}, context)
    assert status == 200 and len(body["results"]) == rt.settings.max_batch
    assert_error(embed_json({"images": [image] * (rt.settings.max_batch + 1)}, context), 413, "too_many_images")


def test_oversized_base64_body_is_refused_before_decoding(rt, context, monkeypatch) -> None:
    """The size check reads the base64 length: a body that decodes to more than MAX_IMAGE_BYTES is never
    decoded (base64 of 6 MB allocates 4.5 MB more, per request)."""
    limit = rt.settings.limits.max_bytes
    event = http_event("POST", "/embed", b"\xff\xd8" + bytes(limit + 4096), "image/jpeg")
    monkeypatch.setattr(api.base64, "b64decode", lambda *a, **k: pytest.fail("decoded an oversized body"))
    assert_error(call(event, context), 413, "image_too_large")


def test_s3_unavailable_is_503_per_image(rt, context, monkeypatch) -> None:
    def throttled(**kw: Any) -> Any:
        raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")

    monkeypatch.setattr(rt.s3, "get_object", throttled)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/busy.jpg"}]}, context)
    assert status == 200
    assert (body["results"][0]["status"], body["results"][0]["error"]["code"]) == (503, "s3_unavailable")


def raw_base64_event(text: str) -> dict[str, Any]:
    """An image request whose body is ``text`` as API Gateway would pass it (already base64)."""
    event = http_event("POST", "/embed", b"", "image/jpeg")
    event["body"], event["isBase64Encoded"] = text, True
    return event


def test_the_base64_pre_check_sits_exactly_at_the_limit(rt, context) -> None:
    """The largest base64 body that can decode to MAX_IMAGE_BYTES (plus padding slack) reaches the decoder;
    one character more is refused by its length alone."""
    limit = rt.settings.limits.max_bytes
    longest = 4 * (limit // 3 + 1) + 4
    status, body = call(raw_base64_event("A" * longest), context)
    assert (status, body["error"]["code"]) == (413, "image_too_large")
    assert "request body exceeds" not in body["error"]["message"]  # decoded, then refused by the engine
    status, body = call(raw_base64_event("A" * (longest + 1)), context)
    assert (status, body["error"]["code"]) == (413, "image_too_large")
    assert body["error"]["message"].startswith("request body exceeds")


def test_media_type_parameters_and_case_are_ignored(rt, context, photo) -> None:
    body = json.dumps({"images": [{"data": b64(photo)}]})
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"):
        status, got = call(http_event("POST", "/embed", body, content_type), context)
        assert status == 200 and len(got["results"]) == 1, content_type
    status, got = call(http_event("POST", "/embed", photo, None), context)
    assert (status, got["error"]["code"]) == (415, "unsupported_media_type")
    assert "(none)" in got["error"]["message"]


def test_invalid_request_names_the_field(rt, context) -> None:
    status, body = embed_json({"images": [{"data": "aGk=", "s3": "s3://b/k"}]}, context)
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert body["error"]["message"].startswith("images.0") and "exactly one" in body["error"]["message"]
    status, body = embed_json({"images": []}, context)
    assert body["error"]["message"].startswith("images: ")
    status, body = embed_json("[1]", context)  # no location: the message does not start with ": "
    assert status == 400 and not body["error"]["message"].startswith((":", " "))
    status, body = embed_json({"images": [{"data": "aGk="}], "X-Request-Id": "1"}, context)  # an unknown field
    assert body["error"]["message"].startswith("X-Request-Id: ")  # named verbatim


def test_a_store_that_fails_is_reported_on_its_image(rt, context, photo, monkeypatch) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="s.jpg", Body=photo)

    def down(**kw: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutItem"
        )

    monkeypatch.setattr(rt.sink.client, "put_item", down)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/s.jpg"}], "store": True}, context)
    item = body["results"][0]
    assert status == 200 and len(item["embedding"]) == 512  # the vector is still answered
    assert (item["stored"], item["status"], item["error"]["code"]) == (False, 503, "store_unavailable")
    assert item["error"]["message"] == "DynamoDB write failed" and item["s3"] == f"s3://{BUCKET}/s.jpg"


def test_every_refusal_has_its_code_message_and_status(rt, context, monkeypatch) -> None:
    """Each S3-reference refusal of a batch item: its code, the status API_ERRORS gives it, a message that
    names the reference."""
    from handler.errors import API_ERRORS

    def denied(**kw: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")

    refs = [f"s3://{BUCKET}/missing.jpg", "s3://other-bucket/k.jpg", "s3://", f"s3://{BUCKET}/x" + "y" * 1100]
    status, body = embed_json({"images": [{"s3": r} for r in refs]}, context)
    assert status == 200
    got = [(r["error"]["code"], r["status"]) for r in body["results"]]
    codes = ["s3_not_found", "s3_bucket_not_allowed", "invalid_s3_uri", "invalid_s3_uri"]
    assert got == [(c, API_ERRORS[c]) for c in codes]
    assert (
        refs[0] in body["results"][0]["error"]["message"] and "other-bucket" in body["results"][1]["error"]["message"]
    )
    monkeypatch.setattr(rt.s3, "get_object", denied)
    _, body = embed_json({"images": [{"s3": refs[0]}]}, context)
    item = body["results"][0]
    assert (item["error"]["code"], item["status"]) == ("s3_access_denied", 403) and refs[0] in item["error"]["message"]


# ------------------------------------------------------------------------------------ s3 keys taken literally
def test_an_s3_reference_key_is_taken_literally(rt, context, photo, photo2) -> None:
    """x%2Fy.png and x/y.png are two objects; 100%25.png is the object named so; no %xx is ever decoded."""
    keys = {"x%2Fy.png": photo, "x/y.png": photo2, "100%25.png": photo, "a+b c%20d.png": photo2}
    for key, data in keys.items():
        rt.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/{key}"} for key in keys]}, context)
    assert status == 200
    for result, (key, data) in zip(body["results"], keys.items(), strict=True):
        assert "error" not in result, (key, result)
        assert result["s3"] == f"s3://{BUCKET}/{key}"
        np.testing.assert_array_equal(np.asarray(result["embedding"], np.float32), FakeEngine.vector_for(data))


def test_store_writes_the_item_under_the_literal_key(rt, context, photo) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="x%2Fy.png", Body=photo)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/x%2Fy.png"}], "store": True}, context)
    assert status == 200 and body["results"][0]["stored"] is True
    assert rt.sink.get(f"s3://{BUCKET}/x%2Fy.png") is not None and rt.sink.get(f"s3://{BUCKET}/x/y.png") is None


def test_a_reference_is_never_decoded_into_another_object(rt, context, photo) -> None:
    """Only x/y.png and 100%.png exist: s3://…/x%2Fy.png and s3://…/100%25.png name other (missing) objects,
    not decodings of those."""
    rt.s3.put_object(Bucket=BUCKET, Key="x/y.png", Body=photo)
    rt.s3.put_object(Bucket=BUCKET, Key="100%.png", Body=photo)
    refs = [{"s3": f"s3://{BUCKET}/x%2Fy.png"}, {"s3": f"s3://{BUCKET}/100%25.png"}]
    status, body = embed_json({"images": refs}, context)
    assert status == 200
    assert [(r.get("status"), r.get("error", {}).get("code")) for r in body["results"]] == [(404, "s3_not_found")] * 2


def test_a_search_result_key_can_be_fed_back(rt, context, photo, photo2) -> None:
    """The key and bucket /search returns name the object as an s3 reference, for /embed and /search."""
    from tests.handler.test_api_text_search import FakeIndex

    rt.s3.put_object(Bucket=BUCKET, Key="x%2Fy.png", Body=photo)
    rt.s3.put_object(Bucket=BUCKET, Key="x/y.png", Body=photo2)
    rt.index = index = FakeIndex({"x%2Fy.png": FakeEngine.vector_for(photo), "x/y.png": FakeEngine.vector_for(photo2)})
    status, body = call(http_event("POST", "/search", json.dumps({"s3": f"s3://{BUCKET}/x%2Fy.png", "k": 1}),
                                   "application/json"), context)  # fmt: skip
    assert status == 200 and [r["key"] for r in body["results"]] == ["x%2Fy.png"]
    np.testing.assert_array_equal(index.queries[-1][0], FakeEngine.vector_for(photo))
    hit = body["results"][0]
    status, body = embed_json({"images": [{"s3": f"s3://{hit['bucket']}/{hit['key']}"}]}, context)
    np.testing.assert_array_equal(np.asarray(body["results"][0]["embedding"], np.float32), FakeEngine.vector_for(photo))


# ---------------------------------------------------------------------------------------- strict request fields
@pytest.mark.parametrize("store", ["true", 1, 0, "false", None, [True]])
def test_store_must_be_a_json_boolean(rt, context, photo, store: Any) -> None:
    rt.s3.put_object(Bucket=BUCKET, Key="p.jpg", Body=photo)
    status, body = embed_json({"images": [{"s3": f"s3://{BUCKET}/p.jpg"}], "store": store}, context)
    assert_error((status, body), 400, "invalid_request")
    assert body["error"]["message"].startswith("store: ")
    assert rt.sink.get(f"s3://{BUCKET}/p.jpg") is None


@pytest.mark.parametrize("ref", [{"data": 5}, {"s3": 1}, {"data": True}, {"s3": ["s3://photos/p.jpg"]}])
def test_image_references_are_strings(rt, context, ref: dict[str, Any]) -> None:
    assert_error(embed_json({"images": [ref]}, context), 400, "invalid_request")
