"""The sample events (infra/local/make_events.py): events/ is what it writes, and each event is one the
functions understand as the service would send it."""

from __future__ import annotations

import base64
import json

from handler import events
from handler.events import Action
from infra.local import make_events
from infra.local.make_events import ROOT

EVENTS = ROOT / "events"


def test_events_folder_is_what_make_events_writes() -> None:
    """events/ is generated (infra/local/make_events.py), like handler/openapi.json: kept current by this test."""
    from infra.local.make_events import event_files

    expected = event_files()
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(expected)
    for name, content in expected.items():
        assert json.loads((EVENTS / name).read_text()) == json.loads(json.dumps(content)), (
            f"regenerate: python infra/local/make_events.py ({name})"
        )


def test_the_notifications_name_one_object_with_its_key_url_encoded_as_s3_sends_it() -> None:
    direct = events.from_payload({"Records": [make_events.s3_record()]})
    wrapped = events.from_message_body(make_events.sqs_event()["Records"][0]["body"])
    for [event] in (direct, wrapped):
        assert (event.action, event.bucket, event.key) == (Action.CREATED, make_events.BUCKET, make_events.KEY)
        assert (event.size, event.etag, event.sequencer) == (make_events.SIZE, make_events.ETAG, make_events.SEQUENCER)
    assert make_events.KEY_ENCODED != make_events.KEY and " " in make_events.KEY  # the decoding is exercised
    [removed] = events.from_payload({"Records": [make_events.s3_record("ObjectRemoved:Delete")]})
    assert removed.action is Action.REMOVED


def test_an_api_events_content_length_is_its_bodys_as_sent() -> None:
    jpeg = base64.b64encode(b"\xff\xd8 a jpeg").decode()
    assert make_events.api_event(jpeg, "image/jpeg")["headers"]["content-length"] == str(len(b"\xff\xd8 a jpeg"))
    malformed = make_events.api_event("this is not base64!", "image/jpeg")
    assert malformed["headers"]["content-length"] == str(len("this is not base64!")) and malformed["isBase64Encoded"]
    text = make_events.api_event('{"texts": ["a"]}', "application/json", is_base64=False)
    assert text["headers"]["content-length"] == "16" and text["isBase64Encoded"] is False
