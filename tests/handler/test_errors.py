"""The functions' error classes (handler.errors): one table of API codes and statuses, the docs' table, and
what each class tells the caller to do."""

from __future__ import annotations

import pytest

from handler import errors
from handler.errors import API_ERRORS, IndexMisconfigured, ModelUnsound, RequestError, TransientError
from layer.errors import CodedError


def test_the_readme_error_table_is_the_api_errors_table() -> None:
    """Each README row "| status | `code`, … |" lists exactly the codes API_ERRORS answers with that status."""
    import re
    from pathlib import Path

    from handler.errors import API_ERRORS

    readme = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    table = readme[readme.index("| status | codes |") :].split("\n\n")[0]
    documented = {
        code: int(row[0])
        for row in re.findall(r"^\| (\d{3}) \|(.*)\|$", table, re.M)
        for code in re.findall(r"`([a-z0-9_]+)`", re.sub(r"\([^)]*\)", "", row[1]))
    }
    assert documented == API_ERRORS


def test_a_request_error_reads_as_its_message() -> None:
    from handler.errors import RequestError

    exc = RequestError("invalid_base64", "request body is not valid base64")
    assert str(exc) == exc.message == "request body is not valid base64"  # in a traceback or a log, too
    assert (exc.code, exc.http_status) == ("invalid_base64", 400)


@pytest.mark.parametrize("code", sorted(API_ERRORS))
def test_a_request_error_answers_the_tables_status_for_its_code(code: str) -> None:
    exc = RequestError(code, "why")
    assert isinstance(exc, CodedError) and (exc.code, exc.http_status) == (code, API_ERRORS[code])
    assert exc.to_dict() == {"code": code, "message": "why"}


def test_a_code_outside_the_table_cannot_be_answered() -> None:
    with pytest.raises(KeyError):
        RequestError("teapot", "no such code")


def test_the_codes_of_the_transient_errors_are_server_side_statuses() -> None:
    """A dependency that failed (503) or refused for good (502): never a 4xx, never the 500 of a bug."""
    assert API_ERRORS[ModelUnsound.code] == 503 and API_ERRORS[IndexMisconfigured.code] == 502
    assert issubclass(ModelUnsound, TransientError) and issubclass(IndexMisconfigured, TransientError)
    for code, status in API_ERRORS.items():
        assert 400 <= status < 600 and status != 500, code
        assert (status >= 500) == code.endswith(("_unavailable", "_misconfigured", "_failed")), code


def test_index_misconfigured_names_the_operation_the_aws_code_and_the_fix() -> None:
    exc = IndexMisconfigured("PutVectors", "NotFoundException", "create the index", "no such index: images")
    assert str(exc) == "S3 Vectors PutVectors: NotFoundException: create the index (no such index: images)"
    assert (exc.operation, exc.aws_code, exc.remedy, exc.detail) == (
        "PutVectors", "NotFoundException", "create the index", "no such index: images",
    )  # fmt: skip
    assert str(IndexMisconfigured("QueryVectors", "AccessDeniedException", "grant it")).endswith("grant it")


def test_skipped_and_refused_objects_are_not_transient() -> None:
    """What the S3 function skips (gone, replaced) or records is never retried as a dependency failure."""
    for cls in (errors.ObjectGone, errors.ObjectChanged, errors.AccessDenied, errors.MalformedEvent,
                errors.ModelMismatch):  # fmt: skip
        assert not issubclass(cls, TransientError), cls
