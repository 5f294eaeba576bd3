"""The OpenAPI document (handler.openapi): committed and current, every route and status of the contract."""

from __future__ import annotations

import json

from handler import openapi


def test_openapi_document_is_current() -> None:
    assert openapi.PATH.read_text() == openapi.render(), "regenerate: python -m handler.openapi > handler/openapi.json"
    doc = json.loads(openapi.PATH.read_text())
    post = doc["paths"]["/embed"]["post"]
    assert set(post["requestBody"]["content"]) == {"image/*", "application/octet-stream", "application/json"}
    assert {"200", "400", "403", "404", "413", "415", "422"} <= set(post["responses"])
    from infra.local.api_gateway import TEMPLATE_ROUTES  # the template's routes, which the local front serves

    assert {f"{m.upper()} {path}" for path, ops in doc["paths"].items() for m in ops} == set(TEMPLATE_ROUTES)
    for path in ("/embed/text", "/search"):
        assert set(doc["paths"][path]["post"]["requestBody"]["content"]) == {"application/json"}
        assert {"200", "400", "413", "501"} <= set(doc["paths"][path]["post"]["responses"])
    for ref in json.dumps(doc).split('"$ref": "')[1:]:
        assert ref.split('"')[0].rsplit("/", 1)[1] in doc["components"]["schemas"]


def test_every_documented_status_is_in_the_openapi_document() -> None:
    from handler.errors import API_ERRORS

    paths = json.loads(openapi.PATH.read_text())["paths"]
    embed = set(paths["/embed"]["post"]["responses"])
    assert {str(s) for s in API_ERRORS.values()} - {"404", "501", "502"} <= embed
    search = set(paths["/search"]["post"]["responses"])
    assert {"501", "502", "503"} <= search  # no text tower / index; index misconfigured; index down
    every = {status for ops in paths.values() for op in ops.values() for status in op.get("responses", {})}
    assert {str(s) for s in API_ERRORS.values()} - {"404"} <= every


def test_index_misconfigured_is_documented_on_search() -> None:
    from handler import openapi

    responses = openapi.document()["paths"]["/search"]["post"]["responses"]
    assert "index_misconfigured" in responses["502"]["description"]
    assert "index_unavailable" in responses["503"]["description"]
