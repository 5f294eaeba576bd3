"""The gallery's browser: Debian's Chromium (``/usr/bin/chromium``, or ``CLIP_LAMBDA_CHROMIUM``) driven by
Playwright, whose own browser download is not used. Under CI (``CI=true``, as ``.ci/run`` sets it) a missing
Chromium or Playwright fails the tests instead of skipping them.

``page`` is a fresh browser context per test with its console collected: every test ends by asserting that
nothing was logged as an error (an uncaught exception, a failed resource, a CSP violation)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.conftest import cross_cpu_required, require

CHROMIUM = os.environ.get("CLIP_LAMBDA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # a container's small /dev/shm must not crash the renderer
]
DESKTOP = {"width": 1280, "height": 900}
REGION = "eu-west-1"


def chromium_path() -> str:
    """Chromium's executable; a skip saying how to install it, or under CI a failure."""
    path = shutil.which(CHROMIUM)
    if path is None:
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CLIP_LAMBDA_CHROMIUM)"
        if cross_cpu_required():  # CI=true: the browser tests must run
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = require("playwright.sync_api")
    path = chromium_path()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Console:
    """What a page logged: errors (console.error, failed loads, CSP violations) and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def on_message(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


@dataclass
class Browsed:
    page: Any
    console: Console


@pytest.fixture
def browsed(browser: Any) -> Iterator[Browsed]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(60_000)
    page = context.new_page()
    console = Console()
    page.on("console", console.on_message)
    page.on("pageerror", console.on_page_error)
    try:
        yield Browsed(page, console)
    finally:
        context.close()


# --- stubbed AWS (botocore's Stubber on real clients) -------------------------------------------------------
def session(region: str | None = REGION) -> Any:
    return boto3.session.Session(aws_access_key_id="AKID", aws_secret_access_key="secret", region_name=region)


class StubbedSession:
    """A boto3 session whose clients are the stubbed ones given (the rest of it is a real session's)."""

    def __init__(self, clients: dict[str, Any], region: str | None = REGION) -> None:
        self.clients, self.region_name, self._real = clients, region, session(region)

    def client(self, service: str, **kwargs: Any) -> Any:
        return self.clients[service] if service in self.clients else self._real.client(service, **kwargs)

    def get_credentials(self) -> Any:
        return self._real.get_credentials()


def described(outputs: dict[str, str]) -> dict[str, Any]:
    listed = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return {"Stacks": [{"StackName": "s", "CreationTime": when, "StackStatus": "CREATE_COMPLETE", "Outputs": listed}]}
