"""The gallery in a real Chromium against the local stack in its deployed shape (``DeployedStack``: moto over
HTTP, both functions under the RIE, the API front with IAM auth, the stack's outputs in CloudFormation), the
gallery itself started as a user starts it: ``clip-lambda ui --stack clip-lambda`` with the stack's
environment (AWS_ENDPOINT_URL: moto), so it reads ApiUrl, BucketName and TableName with DescribeStacks.

The model has random weights, so no test asserts that a text finds a matching picture. What is true for any
weights, and checked: a text query ranks the images exactly by cosine to the text's embedding (computed here
from the items' vectors and POST /embed/text); an image's own s3 reference ranks it first with score 1; the
filters narrow what the index answers. Every wait is on the page's state (Playwright's auto-waiting), never
a sleep; every test ends with no console error.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from infra.local.deployed import DeployedStack
from infra.local.net import free_port
from infra.ui import gallery as gallery_module
from infra.ui.gallery import Gallery, serve_local_stack
from infra.ui.target import local_target
from layer.manifest import Manifest
from tests.conftest import require
from tests.imaging import encode, photo, photo_bytes
from tests.infra.ui.conftest import Browsed

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
STACK = "clip-lambda"
UPLOAD_WAIT_MS = 300_000  # the S3 function's first invoke includes INIT (the model load)
SEEDED = {
    "samples/china.jpg": photo_bytes()["china.jpg"],
    "samples/flower.jpg": photo_bytes()["flower.jpg"],
    "others/china-gray.png": encode(photo("china.jpg").convert("L").resize((320, 240))),
    "others/flower-crop.jpg": encode(photo("flower.jpg").crop((100, 50, 500, 400)), "JPEG", quality=90),
    "others/china-mirror.jpg": encode(photo("china.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG"),
}


def expect() -> Any:
    return require("playwright.sync_api").expect


def unique_jpeg(seed: int) -> bytes:
    """A photo no other test uploads (so that its own reference is the only score-1 match)."""
    rng = np.random.default_rng(seed)
    img = photo("flower.jpg").rotate(int(rng.integers(20, 340)), expand=True).resize((300, 260))
    pixels = np.asarray(img, np.int16) + rng.integers(-40, 40, size=3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=88)
    return buf.getvalue()


@dataclass
class Served:
    """The gallery as ``clip-lambda ui`` serves it (a subprocess), and the stack behind it."""

    url: str
    stack: DeployedStack
    output: list[str]

    @property
    def bucket(self) -> str:
        assert self.stack.moto is not None
        return self.stack.moto.names.bucket

    @property
    def table(self) -> str:
        assert self.stack.moto is not None
        return self.stack.moto.names.table

    def client(self, service: str) -> Any:
        assert self.stack.moto is not None
        return self.stack.moto.client(service)

    def api(self, method: str, route: str, payload: Any = None) -> tuple[int, Any]:
        """A call through the gallery's proxy as a plain client (no envelope): the API's own status."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}api/{route}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def start_cli(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, list[str]]:
    """``clip-lambda ui --stack clip-lambda --port 0``; its URL from the ``==> gallery:`` line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "ui", "--stack", STACK, "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    while True:
        line = lines.get(timeout=120)
        if line is None:
            raise AssertionError(f"clip-lambda ui exited ({proc.wait()}):\n{''.join(output)}")
        output.append(line)
        if line.startswith("==> gallery: "):
            return proc, line.split(": ", 1)[1].strip(), output


@pytest.fixture(scope="module")
def served(model_dir: Path) -> Iterator[Served]:
    with DeployedStack(model_dir, stack_name=STACK).start() as stack:
        assert stack.moto is not None
        s3 = stack.moto.client("s3")
        for key, data in SEEDED.items():
            s3.put_object(Bucket=stack.moto.names.bucket, Key=key, Body=data)
        proc, url, output = start_cli(stack.env())
        try:
            served = Served(url, stack, output)
            wait_indexed(served, set(SEEDED))
            yield served
        finally:
            proc.terminate()  # SIGTERM: the gallery stops cleanly
            assert proc.wait(timeout=30) == 0, "".join(output)


def wait_indexed(served: Served, keys: set[str]) -> None:
    """Until a search through the proxy answers every key (their items and vectors exist), bounded."""
    found: set[str] = set()
    for _ in range(600):
        status, body = served.api("POST", "search", {"text": "a photo", "k": 100})
        assert status == 200, body
        found = {hit["key"] for hit in body["results"]}
        if keys <= found:
            return
        threading.Event().wait(0.5)  # the S3 function embeds the seeded objects meanwhile
    raise AssertionError(f"not indexed: {sorted(keys - found)}")


def indexed_vectors(served: Served) -> dict[str, np.ndarray]:
    """Every vector of the index (moto's S3 Vectors), by its key (the item's pk): what POST /search ranks."""
    assert served.stack.moto is not None
    names = served.stack.moto.names
    listed = served.stack.moto.client("s3vectors").list_vectors(
        vectorBucketName=names.vector_bucket, indexName=names.vector_index, returnData=True, maxResults=1000
    )
    return {v["key"]: np.asarray(v["data"]["float32"], np.float64) for v in listed["vectors"]}


def direct_api(served: Served, route: str, payload: Any) -> tuple[int, Any]:
    """The API called past the gallery, signed by the local stack's own client code (as ``make run`` calls it)."""
    from infra.local.stack import signed_headers

    assert served.stack.api is not None
    url, data = f"{served.stack.api.url}/{route}", json.dumps(payload).encode()
    headers = signed_headers("POST", url, data, "application/json")
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def open_gallery(browsed: Browsed, url: str) -> Any:
    page = browsed.page
    page.goto(url)
    expect()(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def text_search(page: Any, text: str, prefix: str = "") -> list[dict[str, Any]]:
    page.get_by_label("Key prefix").fill(prefix)
    page.get_by_label("Search by text").fill(text)
    page.get_by_label("Search by text").press("Enter")
    return answered(page, f"for “{text}”" + (f" under {prefix}" if prefix else ""))


def answered(page: Any, label: str) -> list[dict[str, Any]]:
    """The grid once the status says the search ``label`` answered ("N results <label>."): the submit set
    "Searching…" synchronously, so an earlier answer cannot match."""
    expect()(page.locator("#status")).to_have_text(re.compile(rf"^\d+ results? {re.escape(label)}\.$"))
    return cards(page)


def cards(page: Any) -> list[dict[str, Any]]:
    expect()(page.locator("#results")).to_have_attribute("aria-busy", "false")
    return [
        {"key": c.get_attribute("data-key"), "score": float(c.locator(".score").inner_text())}
        for c in page.locator("#results li.card").all()
    ]


def assert_thumbnails_loaded(page: Any, selector: str = "#results li.card img") -> None:
    """Every thumbnail decoded: the presigned GETs work from the browser. Each is scrolled to (they load
    lazily: one far below the fold, on a phone's screen, would never load), and the predicate is a function,
    which Playwright evaluates once and then calls: an expression it would evaluate on every poll, which the
    page's CSP (no 'unsafe-eval') refuses after the first."""
    for img in page.locator(selector).all():
        img.scroll_into_view_if_needed()
    page.wait_for_function(
        "(selector) => [...document.querySelectorAll(selector)].every(i => i.complete && i.naturalWidth > 0)",
        arg=selector,
    )


def assert_no_console_errors(browsed: Browsed) -> None:
    assert browsed.console.errors == []


# --- the page --------------------------------------------------------------------------------------------
def test_the_page_shows_the_model_and_its_dimension(served: Served, browsed: Browsed, model_dir: Path) -> None:
    page = open_gallery(browsed, served.url)
    manifest = Manifest.read(model_dir)
    expect()(page.locator("#model-id")).to_have_text(manifest.model_id)
    expect()(page.locator("#model-dim")).to_have_text(f"· {manifest.dim}-d")
    expect()(page.locator("#untrained")).to_be_visible()  # random-init: said, not hidden
    expect()(page.locator("#target")).to_contain_text(f"stack {STACK}")
    expect()(page.get_by_text(f"s3://{served.bucket}/uploads/")).to_be_visible()
    assert any("uploads go through this server" in line for line in served.output)  # no CORS rule on the bucket
    assert_no_console_errors(browsed)


def test_a_text_query_ranks_the_images_by_cosine_to_the_texts_embedding(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    text = "a photo of a temple by a lake"
    grid = text_search(page, text)
    status, answer = served.api("POST", "embed/text", {"texts": [text]})
    assert status == 200, answer
    query = np.asarray(answer["results"][0]["embedding"], np.float64)
    cosine = {pk.removeprefix(f"s3://{served.bucket}/"): float(query @ v / np.linalg.norm(v))
              for pk, v in indexed_vectors(served).items()}  # fmt: skip
    keys = [c["key"] for c in grid]
    assert sorted(keys) == sorted(cosine) and set(SEEDED) <= set(keys)  # k=24: every image of the index
    assert all(cosine[a] >= cosine[b] - 1e-6 for a, b in pairwise(keys))  # nearest first
    for card in grid:
        assert card["score"] == pytest.approx(cosine[card["key"]], abs=1e-3)  # the score shown is the cosine
    assert_thumbnails_loaded(page)
    if shot := os.environ.get("CLIP_LAMBDA_SCREENSHOT"):  # docs/gallery.png: CLIP_LAMBDA_SCREENSHOT=docs/gallery.png
        page.get_by_label("Search by text").blur()
        page.screenshot(path=str(ROOT / shot), full_page=True)
    assert_no_console_errors(browsed)


def test_more_like_this_from_the_keyboard_ranks_the_chosen_image_first(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    text_search(page, "a flower")
    page.locator('#results li.card[data-key="samples/flower.jpg"] button').focus()
    page.keyboard.press("Enter")
    grid = answered(page, "like samples/flower.jpg")
    assert grid[0] == {"key": "samples/flower.jpg", "score": 1.0}
    assert all(c["score"] < 0.9999 for c in grid[1:])  # no other object holds these bytes
    expect()(page.get_by_label("Search by text")).to_have_value("")
    assert_no_console_errors(browsed)


def test_a_prefix_filter_narrows_the_grid(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    everything = text_search(page, "a garden")
    narrowed = text_search(page, "a garden", prefix="others/")
    others = sorted(k for k in SEEDED if k.startswith("others/"))
    assert sorted(c["key"] for c in narrowed) == others
    assert len(everything) > len(narrowed)
    # Enter in the prefix box re-runs the current query (here by example) with the new filter.
    page.locator('#results li.card[data-key="others/china-mirror.jpg"] button').click()
    answered(page, "like others/china-mirror.jpg under others/")
    page.get_by_label("Key prefix").fill("samples/")
    page.get_by_label("Key prefix").press("Enter")
    grid = answered(page, "like others/china-mirror.jpg under samples/")
    assert sorted(c["key"] for c in grid) == ["samples/china.jpg", "samples/flower.jpg"]
    assert_no_console_errors(browsed)


def test_an_image_dropped_or_pasted_as_a_query_finds_itself(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    drop(page, "#query-drop", "crop.jpg", "image/jpeg", SEEDED["others/flower-crop.jpg"])
    assert answered(page, "like the image crop.jpg")[0] == {"key": "others/flower-crop.jpg", "score": 1.0}
    paste(page, "mirror.jpg", "image/jpeg", SEEDED["others/china-mirror.jpg"])
    assert answered(page, "like the image mirror.jpg")[0] == {"key": "others/china-mirror.jpg", "score": 1.0}
    assert_no_console_errors(browsed)


def transfer(page: Any, name: str, mime: str, data: bytes) -> Any:
    """A DataTransfer holding one file, as the browser hands a dropped or pasted file to the page."""
    return page.evaluate_handle(
        """([name, mime, bytes]) => {
            const t = new DataTransfer();
            t.items.add(new File([new Uint8Array(bytes)], name, {type: mime}));
            return t;
        }""",
        [name, mime, list(data)],
    )


def paste(page: Any, name: str, mime: str, data: bytes) -> None:
    page.evaluate(
        "(t) => document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: t, bubbles: true}))",
        transfer(page, name, mime, data),
    )


def drop(page: Any, selector: str, name: str, mime: str, data: bytes) -> None:
    """A file dragged over ``selector`` and dropped there."""
    files = transfer(page, name, mime, data)
    page.dispatch_event(selector, "dragover", {"dataTransfer": files})
    page.dispatch_event(selector, "drop", {"dataTransfer": files})


def test_a_file_that_is_not_an_image_shows_the_apis_error(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    notes = b"these are notes, not an image"
    page.get_by_label("Search by image").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": notes}]
    )
    status, body = served.api("POST", "search", {"image": base64.b64encode(notes).decode(), "k": 24})
    assert status == 422 and body["error"]["code"] == "not_an_image"
    alert = page.get_by_role("alert")
    expect()(alert).to_have_text(f"not_an_image: {body['error']['message']}")
    expect()(page.locator("#results li.card")).to_have_count(0)
    assert_no_console_errors(browsed)  # the 422 is an answer shown, not a failed request


def test_an_empty_text_gets_the_apis_own_refusal(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    page.get_by_role("button", name="Search", exact=True).click()
    status, body = served.api("POST", "search", {"text": "", "k": 24})
    assert status == 400
    expect()(page.get_by_role("alert")).to_have_text(f"{body['error']['code']}: {body['error']['message']}")
    assert_no_console_errors(browsed)


# --- uploads ---------------------------------------------------------------------------------------------
def upload_and_wait(page: Any, name: str, data: bytes, dropped: bool = False) -> str:
    """Upload through the page (its file input, or a drop on the upload area); the key once the page shows
    the object embedded."""
    marker = page.evaluate("() => (window.__noReload = Math.random())")
    if dropped:
        drop(page, "#upload-drop", name, "image/jpeg", data)
    else:
        page.get_by_label("Upload to").set_input_files(files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])
    row = page.locator("#uploads li").first
    expect()(row).to_have_attribute("data-state", "embedded", timeout=UPLOAD_WAIT_MS)
    key = row.get_attribute("data-key")
    assert key and key.startswith("uploads/") and key.endswith(".jpg")
    card = page.locator("#results li.card.new")
    expect()(card).to_have_attribute("data-key", key, timeout=UPLOAD_WAIT_MS)
    assert page.evaluate("() => window.__noReload") == marker  # shown without a reload
    return key


def test_an_upload_appears_without_a_reload_first_among_its_neighbours(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    data = unique_jpeg(seed=1)
    key = upload_and_wait(page, "my holiday photo.jpg", data)
    assert key.startswith("uploads/my-holiday-photo-")
    grid = cards(page)
    assert grid[0] == {"key": key, "score": 1.0}  # its own reference: ranked first, among the seeded images
    assert {c["key"] for c in grid} >= set(SEEDED)
    assert served.client("s3").get_object(Bucket=served.bucket, Key=key)["Body"].read() == data
    assert_thumbnails_loaded(page, "#uploads li img")
    assert_thumbnails_loaded(page)
    assert_no_console_errors(browsed)


def test_an_upload_that_is_not_an_image_shows_its_failure_record(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    page.get_by_label("Upload to").set_input_files(
        files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8 truncated, not a JPEG"}]
    )
    row = page.locator("#uploads li").first
    expect()(row).to_have_attribute("data-state", "failed", timeout=UPLOAD_WAIT_MS)
    key = row.get_attribute("data-key")
    stored = served.client("dynamodb").get_item(
        TableName=served.table,
        Key={"pk": {"S": f"s3://{served.bucket}/{key}"}},
    )["Item"]
    code, message = stored["error_code"]["S"], stored["error_message"]["S"]
    assert code in ("not_an_image", "corrupt_image")
    expect()(row.locator(".state")).to_have_text(f"failed: {code}")
    expect()(page.get_by_role("alert")).to_have_text(f"{code}: {key}: {message}")
    assert_no_console_errors(browsed)


def test_the_local_stacks_gallery_uploads_straight_to_s3_with_a_presigned_put(served: Served, browsed: Browsed) -> None:
    """``serve_local_stack``, what ``clip-lambda local`` starts: the local credentials, and a file dropped on
    the upload area is PUT by the browser to moto's presigned URL across origins (moto's server answers CORS
    for every origin)."""
    stack = served.stack
    assert stack.api is not None and stack.moto is not None
    with serve_local_stack(stack.api.url, stack.moto) as gallery:
        assert gallery.upload_mode == "direct"
        page = open_gallery(browsed, gallery.url)
        expect()(page.locator("body")).to_have_attribute("data-upload", "direct")
        requests: list[str] = []
        page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
        key = upload_and_wait(page, "direct.jpg", unique_jpeg(seed=2), dropped=True)
        assert any(r.startswith(f"PUT {stack.moto.endpoint}/{served.bucket}/{key}?") for r in requests), requests
        assert cards(page)[0] == {"key": key, "score": 1.0}
        assert_no_console_errors(browsed)


# --- keyboard, phone, tags -------------------------------------------------------------------------------
def test_every_control_is_reachable_with_tab_labelled_and_visibly_focused(served: Served, browsed: Browsed) -> None:
    page = open_gallery(browsed, served.url)
    reached: list[str] = []

    def tab() -> str:
        page.keyboard.press("Tab")
        info = page.evaluate(
            """() => { const e = document.activeElement; const s = getComputedStyle(e);
                return {id: e.id, tag: e.tagName, key: e.closest('li.card')?.dataset.key || '',
                        outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"""
        )
        assert info["outline"] != "none" and info["width"] > 0, info  # visible focus on every stop
        reached.append(f"card:{info['key']}" if info["key"] else info["id"] or info["tag"])
        return reached[-1]

    assert tab() == "A"  # the skip link
    assert tab() == "q"
    page.keyboard.type("a lake")
    page.keyboard.press("Enter")  # Enter submits
    answered(page, "for “a lake”")
    while not tab().startswith("card:") and len(reached) < 20:
        pass
    # The form (the tag filter: the model has a vocabulary), the two file inputs, then the results.
    assert reached == ["A", "q", "prefix", "tag", "k", "BUTTON", "query-file", "upload-file", reached[-1]], reached
    page.keyboard.press("Enter")  # a result: more like this
    assert answered(page, f"like {reached[-1].removeprefix('card:')}")[0]["score"] == 1.0
    for control in ("q", "prefix", "k", "query-file", "upload-file", "tag"):
        assert page.locator(f"label[for={control}]").count() == 1
    assert page.locator("#status").get_attribute("role") == "status"  # announced: results and errors
    assert page.locator("#error").get_attribute("role") == "alert"
    assert_no_console_errors(browsed)


def test_the_page_is_usable_360_pixels_wide(served: Served, browsed: Browsed) -> None:
    page = browsed.page
    page.set_viewport_size({"width": 360, "height": 740})
    open_gallery(browsed, served.url)
    text_search(page, "a bridge")
    assert_thumbnails_loaded(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360  # nothing sideways
    xs = {round(box["x"]) for box in (c.bounding_box() for c in page.locator("#results li.card").all()) if box}
    assert len(xs) == 2  # two columns
    for control in ("Search by text", "Key prefix", "Tag", "Search by image", "Upload to"):
        box = page.get_by_label(control, exact=control == "Tag").bounding_box()  # not the cards' "Tags" lists
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    chips = page.locator("#results li.card .tags li")
    expect()(chips.first).to_be_visible()  # each card's tags, within its column
    for card in page.locator("#results li.card").all():
        box, inner = card.bounding_box(), [t.bounding_box() for t in card.locator(".tags li").all()]
        assert box and inner and all(b and box["x"] <= b["x"] and b["x"] + b["width"] <= box["x"] + box["width"]
                                     for b in inner)  # fmt: skip
    assert_no_console_errors(browsed)


# Three uploads unlike every other image of the suite (none holds another's bytes), two of them alike: with
# random weights an image's tags are arbitrary but deterministic, and these do not all carry the same five.
TAGGED_UPLOADS = {
    "temple sideways.jpg": encode(photo("china.jpg").rotate(90, expand=True), "JPEG", quality=90),
    "flower in gray.jpg": encode(photo("flower.jpg").convert("L"), "JPEG", quality=90),
    "flower upside down.jpg": encode(photo("flower.jpg").transpose(Image.Transpose.FLIP_TOP_BOTTOM), "JPEG"),
}


def card_tags(page: Any, key: str) -> list[str]:
    tags: list[str] = page.locator(f'#results li.card[data-key="{key}"] .tags li').all_inner_texts()
    return tags


def item_tags(served: Served, key: str) -> list[str]:
    """The tags the S3 function wrote to the object's item (``tags``: labels, best first)."""
    got = served.client("dynamodb").get_item(TableName=served.table, Key={"pk": {"S": f"s3://{served.bucket}/{key}"}})
    return [v["S"] for v in got["Item"]["tags"]["L"]]


def indexed_tags(served: Served) -> dict[str, list[str]]:
    """Every object of the index (by key) with the tags of its vector's metadata: what a tag filter reads."""
    assert served.stack.moto is not None
    names = served.stack.moto.names
    listed = served.stack.moto.client("s3vectors").list_vectors(
        vectorBucketName=names.vector_bucket, indexName=names.vector_index, returnMetadata=True, maxResults=1000
    )
    return {v["metadata"]["key"]: list(v["metadata"].get("tags", [])) for v in listed["vectors"]}


def test_the_tag_filter_offers_the_vocabulary_and_narrows_the_grid_to_the_images_tagged(
    served: Served, browsed: Browsed
) -> None:
    """Real zero-shot tags end to end: uploads through the page, the tags each card shows (those of the
    object's item and of its vector), a tag one upload carries and another does not chosen in the page; the
    grid is then exactly the images of the index carrying it, in the API's own order for the same filter,
    with a query and without one (browse)."""
    status, model = served.api("GET", "model")
    assert status == 200 and model["tags"], model
    vocabulary = model["tags"]["labels"]
    page = open_gallery(browsed, served.url)
    tag_filter = page.get_by_label("Tag", exact=True)
    expect()(tag_filter).to_be_visible()  # offered from GET /model, before any result
    options = tag_filter.locator("option").all_inner_texts()
    assert options[0] == "any tag" and sorted(options[1:]) == sorted(vocabulary), options

    tagged: dict[str, list[str]] = {}
    for name, data in TAGGED_UPLOADS.items():
        key = upload_and_wait(page, name, data)
        tagged[key] = card_tags(page, key)
        assert tagged[key] == item_tags(served, key), key  # the item's tags, best first, shown on its card
        assert 0 < len(tagged[key]) <= model["tags"]["top_k"] and len(set(tagged[key])) == len(tagged[key])
        assert set(tagged[key]) <= set(vocabulary)
    index = indexed_tags(served)
    assert all(index[key] == tags for key, tags in tagged.items())  # the vector's metadata holds the same
    some = [t for t in vocabulary if 0 < sum(t in tags for tags in tagged.values()) < len(tagged)]
    assert some, f"every upload carries the same tags: {tagged}"
    tag = some[0]
    carriers = {key for key, tags in tagged.items() if tag in tags}
    others = set(tagged) - carriers
    everywhere = {key for key, tags in index.items() if tag in tags}  # every image of the index carrying it

    # With a query: choosing the tag re-runs it with "tags": [tag].
    everything = text_search(page, "a photo")
    tag_filter.select_option(tag)
    grid = answered(page, f"for “a photo” tagged {tag}")
    keys = [c["key"] for c in grid]
    assert set(keys) == everywhere and carriers <= set(keys) and not others & set(keys)
    assert len(keys) < len(everything)  # narrowed
    request = {"text": "a photo", "k": 24, "tags": [tag]}
    status, own = direct_api(served, "search", request)
    assert status == 200 and keys == [hit["key"] for hit in own["results"]]  # the API's own answer, in order
    assert served.api("POST", "search", request) == (status, own)  # the proxy passes the filter on untouched
    for key in keys:
        assert tag in card_tags(page, key)
        expect()(page.locator(f'#results li.card[data-key="{key}"] .tags li.chosen')).to_have_text(tag)

    # Without a query: a fresh page, the tag chosen from the keyboard browses by it.
    page = open_gallery(browsed, served.url)
    tag_filter.focus()
    page.keyboard.type(tag)  # the select's type-ahead picks the option; change re-runs the (absent) query
    expect()(tag_filter).to_have_value(tag)
    browsed_grid = answered(page, f"tagged {tag}")
    expect()(page.locator("#query")).to_have_text(f"Query: the images tagged {tag}")
    status, own = direct_api(served, "search", {"tags": [tag], "k": 24})
    assert status == 200 and own["query"] == "tags"
    assert [c["key"] for c in browsed_grid] == [hit["key"] for hit in own["results"]]
    assert {c["key"] for c in browsed_grid} == everywhere
    for card, hit in zip(browsed_grid, own["results"], strict=True):
        assert card["score"] == pytest.approx(hit["score"], abs=1e-4) and hit["tags"] == card_tags(page, card["key"])
    # "any tag" again: no query, no results.
    tag_filter.select_option("")
    expect()(page.locator("#results li.card")).to_have_count(0)
    expect()(page.locator("#status")).to_have_text("")
    assert_no_console_errors(browsed)


# --- the server's guards (no browser) --------------------------------------------------------------------
def raw(url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_page_and_its_assets_are_package_data_that_load_nothing_from_elsewhere(served: Served) -> None:
    status, headers, page = raw(served.url)
    assert status == 200 and b"<title>clip-lambda gallery</title>" in page
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
    assert all(ref.startswith((b"/static/", b"#")) for ref in re.findall(rb'(?:src|href)="([^"]*)"', page))
    for asset in ("style.css", "app.js", "favicon.svg"):
        status, _, body = raw(f"{served.url}static/{asset}")
        assert status == 200 and body == gallery_module.static_file(asset)
    assert not re.search(rb"https?://|@import|url\(", raw(f"{served.url}static/style.css")[2])  # no fonts, no CDN
    assert not re.search(rb"https?://", raw(f"{served.url}static/app.js")[2])
    assert raw(f"{served.url}static/../gallery.py")[0] == 404


def test_the_static_files_ship_as_package_data() -> None:
    """A wheel (not only an editable install) must carry static/: setuptools takes non-Python files only
    where pyproject.toml's [tool.setuptools.package-data] names them."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [f"static/{p.name}" for p in (ROOT / "infra" / "ui" / "static").iterdir()]
    assert shipped and all(any(fnmatch(f, pattern) for pattern in package_data["infra.ui"]) for f in shipped)


def test_only_its_own_origin_is_answered(served: Served) -> None:
    port = served.url.rsplit(":", 1)[1].strip("/")
    foreign = raw(f"{served.url}api/model", headers={"Origin": "https://evil.example"})
    assert foreign[0] == 403 and json.loads(foreign[2])["error"]["code"] == "foreign_origin"
    rebound = raw(f"{served.url}api/model", headers={"Host": f"evil.example:{port}"})
    assert rebound[0] == 403
    assert raw(f"{served.url}api/model", headers={"Origin": f"http://localhost:{port}"})[0] == 200


def test_the_envelope_carries_the_apis_status_and_the_plain_proxy_keeps_it(served: Served) -> None:
    body = json.dumps({"image": "not base64!"}).encode()
    headers = {"Content-Type": "application/json"}
    plain = raw(f"{served.url}api/search", "POST", headers, body)
    wrapped = raw(f"{served.url}api/search", "POST", {**headers, "X-Clip-Gallery": "1"}, body)
    assert plain[0] == 400 and wrapped[0] == 200
    assert json.loads(wrapped[2]) == {"status": 400, "body": json.loads(plain[2])}
    assert json.loads(plain[2])["error"]["code"] == "invalid_base64"


def test_server_uploads_go_only_under_uploads(served: Served) -> None:
    for key in ("samples/china.jpg", "uploads/../samples/x.jpg", "uploads/", "uploads/a/b.jpg"):
        status, _, body = raw(f"{served.url}ui/upload?key={key}", "PUT", {"Content-Type": "image/jpeg"}, b"x")
        assert status == 400 and json.loads(body)["error"]["code"] == "invalid_key", key
    status, _, body = raw(f"{served.url}ui/thumbnails", "POST", {"Content-Type": "application/json"},
                          json.dumps({"objects": [{"bucket": "someone-elses", "key": "a.jpg"}]}).encode())  # fmt: skip
    assert status == 200 and json.loads(body) == {"urls": [None]}  # presigns the stack's bucket only


def test_an_api_that_does_not_answer_is_an_error_the_page_shows(served: Served, browsed: Browsed) -> None:
    assert served.stack.moto is not None
    target = local_target(f"http://127.0.0.1:{free_port()}", served.stack.moto.endpoint)
    with Gallery(target).start() as gallery:
        page = open_gallery(browsed, gallery.url)
        expect()(page.get_by_role("alert")).to_contain_text("api_unreachable: GET http://127.0.0.1:")
        expect()(page.locator("#model-id")).to_have_text("unavailable")
    assert_no_console_errors(browsed)
