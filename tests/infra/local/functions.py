"""Stand-ins for the functions behind the local fronts: the API function echoing its request, and the S3
function's backfill contract in process."""

from __future__ import annotations

import json
import threading
from typing import Any

from infra.local.rie import InvokeResult


def echo(event: dict[str, Any]) -> InvokeResult:
    """A function that returns the request body as it got it, plus the event in a header."""
    headers = {
        "Content-Type": event["headers"].get("content-type", "text/plain"),
        "X-Event": json.dumps({k: event[k] for k in ("routeKey", "rawPath", "rawQueryString", "isBase64Encoded")}),
    }
    payload = {"statusCode": 200, "headers": headers, "body": event.get("body", ""),
               "isBase64Encoded": event["isBase64Encoded"]}  # fmt: skip
    return InvokeResult(payload=payload, error=False, wall_ms=0.0)


class Function:
    """The S3 function's contract, in process: every item "embedded"; ``gate`` holds invocations until set;
    ``fail`` makes every batch fail with a non-retried error."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.reset()

    def reset(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.gate.set()
        self.entered.clear()
        self.fail = False

    def __call__(self, event: dict[str, Any]) -> InvokeResult:
        self.events.append(event)
        self.entered.set()
        self.gate.wait(60)
        if self.fail:
            return InvokeResult({"errorType": "ModelMismatch", "errorMessage": "expects another"}, True, 1.0)
        results = [{"uri": it["Key"], "outcome": "embedded", "code": None} for it in event["Items"]]
        return InvokeResult({"results": results}, False, 1.0)


def lambda_echo(event: Any, context: Any) -> Any:
    """A Lambda handler returning its event (and raising on {"raise": ...}), for the RIE's own tests."""
    if isinstance(event, dict) and "raise" in event:
        raise ValueError(event["raise"])
    return {"event": event, "function": context.function_name}
