"""Where an object lives (handler.location): bucket and key checked once, s3:// URIs built and parsed."""

from __future__ import annotations

import pytest

from handler import location
from handler.location import MAX_KEY_BYTES, InvalidLocation, check, parse_uri, uri
from tests.handler.helpers import BUCKET


def test_parse_uri_is_the_inverse_of_uri() -> None:

    for key in ("x%2Fy.png", "100%25.png", "a+b c.png", "x/y.png", "%", "%zz", "é%C3%A9"):
        assert location.parse_uri(location.uri(BUCKET, key)) == (BUCKET, key)


def test_uri_is_the_items_key_with_the_key_verbatim() -> None:
    assert uri("b", "a b/c%2Fd+e.jpg") == "s3://b/a b/c%2Fd+e.jpg"
    assert parse_uri("s3://b/dir/") == ("b", "dir/")  # a key may end with a slash
    assert parse_uri("s3://b//x") == ("b", "/x")  # and start with one: everything after the bucket's "/"


@pytest.mark.parametrize(
    ("bucket", "key", "message"),
    [
        ("", "k", "invalid bucket name"),
        ("a/b", "k", "invalid bucket name"),
        ("b" * 256, "k", "invalid bucket name"),
        ("arn:aws:s3:us-east-1:123456789012:accesspoint/ap", "k", "invalid bucket name"),  # no access points
        (None, "k", "invalid bucket name"),
        ("b", "", "invalid key"),
        ("b", None, "invalid key"),
        ("b", "\ud800.jpg", "not valid UTF-8"),  # a lone surrogate has no UTF-8 form
        ("b", "é" * 513, "1026 bytes; S3 keys are at most 1024"),  # counted in UTF-8 bytes, not characters
    ],
)
def test_invalid_names_are_refused_saying_which_and_why(bucket: object, key: object, message: str) -> None:
    with pytest.raises(InvalidLocation, match=message):
        check(bucket, key)


def test_the_limits_are_inclusive_and_legacy_bucket_names_pass() -> None:
    assert check("b", "k" * MAX_KEY_BYTES) == ("b", "k" * MAX_KEY_BYTES)
    assert check("b", "é" * (MAX_KEY_BYTES // 2))[1] == "é" * 512
    assert check("My_Old.Bucket-1", "k") == ("My_Old.Bucket-1", "k")  # botocore still accepts us-east-1's
    assert check("b" * 255, "k")[0] == "b" * 255
    assert issubclass(InvalidLocation, ValueError)


@pytest.mark.parametrize("value", ["photos/x.jpg", "s3:/photos/x.jpg", "S3://photos/x.jpg", "s3://photos", 5, None])
def test_parse_uri_refuses_what_is_not_an_s3_uri_of_an_object(value: object) -> None:
    with pytest.raises(InvalidLocation):
        parse_uri(value)
