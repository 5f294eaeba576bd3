"""``clip-lambda local`` (behind ``make run``): the whole pipeline on 127.0.0.1, no AWS account.

It starts a moto server (S3 bucket, SQS queue + DLQ, S3 → SQS notifications, DynamoDB table), both
functions under the Lambda Runtime Interface Emulator (``handler.s3`` fed by an SQS event-source-mapping
emulator, ``handler.api`` behind a local API Gateway HTTP API front), uploads sample photos, waits for their
DynamoDB items and prints them, calls the API once, then serves until Ctrl-C (or SIGTERM) with instructions
for uploading more; items of later uploads are printed as they land. ``--once`` stops after the demo (the
exit status says whether it worked). Everything it started is stopped on the way out.

The model directory is built first if it is missing (the hub model, or ``random-init`` when the hub cannot
be reached, loudly labelled), exactly as ``make model`` does.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote_plus

import numpy as np

from handler import indexing, item
from handler.item import StoredItem
from handler.sinks.dynamodb import DynamoDBSink
from handler.vector_index import S3VectorsIndex, VectorIndex
from infra.local.api_gateway import TEMPLATE_ROUTES, ApiGateway
from infra.local.moto_stack import CREDENTIALS, REGION, MotoStack, StackNames
from infra.local.net import HOST
from infra.local.poller import Invoke, SqsPoller
from infra.local.rie import InvokeResult, LocalFunction
from infra.ui.gallery import serve_local_stack
from layer.manifest import MANIFEST_FILE, Manifest
from layer.settings import BUILD_DIR, DEFAULT_SOURCE

DEFAULT_API_PORT = 3000
DEFAULT_MOTO_PORT = 5000
SAMPLE_PREFIX = "samples/"
UPLOAD_PREFIX = "photos/"
BANNER = "!" * 100


def say(text: str = "") -> None:
    print(text, flush=True)


def arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clip-lambda local",
        description="Run the local stack: moto (S3, SQS, DynamoDB) + both functions under the Lambda RIE + an "
        "HTTP API front, all on 127.0.0.1. Uploads sample photos, prints their items, calls the API, then "
        "serves until Ctrl-C.",
    )
    p.add_argument("--model", type=Path, default=BUILD_DIR, help="model directory (built if missing)")
    p.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="model source used only when --model does not exist yet (falls back to random-init offline)",
    )
    p.add_argument("--port", type=int, default=None, help=f"API front port (default {DEFAULT_API_PORT}, or free)")
    p.add_argument(
        "--moto-port", type=int, default=None, help=f"moto server port (default {DEFAULT_MOTO_PORT}, or free)"
    )
    p.add_argument(
        "--once",
        "--no-serve",
        dest="once",
        action="store_true",
        help="run the demo (uploads, items, one API call) and exit; status 0 only if all of it worked",
    )
    p.add_argument("--photos", type=Path, nargs="*", default=[], help=f"more files to upload under {UPLOAD_PREFIX}")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the demo's items")
    p.add_argument("--no-samples", action="store_true", help="do not upload the sample photos")
    p.add_argument(
        "--api-auth",
        choices=["AWS_IAM", "NONE"],
        default="AWS_IAM",
        help="the API front's authorization, as the template's ApiAuth (default AWS_IAM: SigV4-signed requests "
        "with the local credentials; unsigned ones get 403)",
    )
    return p


class ModelUnavailable(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --- model ---------------------------------------------------------------------------------------------
def ensure_model(model: Path, source: str) -> Manifest:
    """The model's manifest; builds the model directory first (as ``make model``) if it has none."""
    if not (model / MANIFEST_FILE).exists():
        say(f"==> no model at {model}: building it (clip-lambda build-model --source {source})")
        cmd = [sys.executable, "-m", "layer.convert", "build-model", "--source", source]
        cmd += ["--fallback-source", "random-init", "--out", str(model)]
        build = subprocess.run(cmd, check=False, timeout=3600)
        if build.returncode:
            raise ModelUnavailable(f"building the model failed (exit status {build.returncode})", build.returncode)
    return Manifest.read(model)


def describe_model(model: Path, manifest: Manifest) -> None:
    parts = []
    for tower in manifest.towers.values():
        gate = tower.accuracy_gate or {}
        kept = f", {len(tower.kept_fp32)} node(s) kept fp32" if tower.kept_fp32 else ""
        cos = gate.get("cosine_min")
        parts.append(
            f"{tower.name} gate min cosine {cos:.5f}{kept}" if isinstance(cos, int | float) else f"{tower.name} fp32"
        )
    say(f"==> model {manifest.model_id}  ({manifest.precision}, dim {manifest.dim}; {'; '.join(parts)})  from {model}")
    if manifest.random_init:
        say(BANNER)
        say(f"!!! MODEL {manifest.model_id} IS UNTRAINED (random-init: the fallback when the hub")
        say(f"!!! cannot be reached). Its vectors are well-formed ({manifest.dim}-d, unit norm) but carry NO meaning.")
        say("!!! With hub access: rm -rf build/model && make model   (or clip-lambda build-model --source ...)")
        say(BANNER)


# --- ports ---------------------------------------------------------------------------------------------
class PortInUse(Exception):
    pass


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def choose_port(requested: int | None, default: int, what: str) -> int:
    """The requested port (it must be free; 0: the server binds any free port itself), else the default if
    free, else any free port (said so)."""
    if requested is not None:
        if requested and not port_is_free(requested):
            raise PortInUse(f"{HOST}:{requested} ({what}) is already in use: pick another port")
        return requested
    if port_is_free(default):
        return default
    say(f"    ({what}: port {default} is in use, using a free one)")
    return 0


# --- items ---------------------------------------------------------------------------------------------
def local_index(stack: MotoStack) -> VectorIndex | None:
    """The local stack's vector index, for reading lean items' vectors (None: VectorIndex=none)."""
    n = stack.names
    if not n.vector_bucket:
        return None
    return S3VectorsIndex(stack.client("s3vectors"), n.vector_bucket, n.vector_index)


def format_item(pk: str, stored: StoredItem, index: VectorIndex | None = None) -> str:
    """Two lines for an item: key, model, dim, norm, first values (from the item, or the index for a lean
    item); or the failure record."""
    a = stored.attributes
    if not stored.has_embedding:
        return f"  {pk}\n      FAILED {a.get(item.ERROR_CODE)}: {a.get(item.ERROR_MESSAGE)}"
    vec, where = indexing.stored_vector(stored, index)
    if vec is None:
        return f"  {pk}\n      model {a.get(item.MODEL)}  dim {a.get(item.DIM)}  (its vector is not in the index yet)"
    first = ", ".join(f"{v:+.4f}" for v in vec[:6])
    return (
        f"  {pk}\n"
        f"      model {a.get(item.MODEL)}  dim {a.get(item.DIM)}  norm {float(a.get(item.NORM, 0)):.4f}  "
        f"|embedding| {np.linalg.norm(vec):.6f}  {a.get(item.WIDTH, 0)}x{a.get(item.HEIGHT, 0)} "
        f"{a.get(item.CONTENT_TYPE) or ''}\n"
        f"      first values [{first}, ...]  (vector from the {where})"
    )


def wait_for_items(
    sink: DynamoDBSink, pks: list[str], timeout: float, since: float | None = None, index: VectorIndex | None = None
) -> dict[str, StoredItem]:
    """Poll until every pk has an item and its vector (in the item, or the index for a lean item), printing
    each as it lands with the seconds since ``since`` (a ``time.monotonic()`` such as the upload time),
    bounded by ``timeout``."""
    found: dict[str, StoredItem] = {}
    t0 = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    while len(found) < len(pks) and time.monotonic() < deadline:
        for pk in pks:
            if pk in found or (stored := sink.get(pk)) is None:
                continue
            if stored.has_embedding and indexing.stored_vector(stored, index)[0] is None:
                continue  # a lean item whose vector the invocation has not indexed yet
            found[pk] = stored
            say(f"{format_item(pk, stored, index)}\n      ({time.monotonic() - t0:.1f}s after the upload)")
        if len(found) < len(pks):
            time.sleep(0.5)
    return found


class ItemReporter:
    """Wraps the S3 function's invoke: once enabled, prints the item (or deletion) of every object in each
    batch the mapping delivered — what the user sees for uploads while the stack serves."""

    def __init__(self, ddb: Any, table: str, index: VectorIndex | None = None) -> None:
        self.sink, self.index, self.enabled = DynamoDBSink(ddb, table), index, False

    def wrap(self, invoke: Invoke) -> Invoke:
        def run(event: dict[str, Any]) -> InvokeResult:
            result = invoke(event)
            if self.enabled:
                try:
                    self.report(event, result)
                except Exception as exc:  # a report must never break the mapping
                    say(f"  (could not report the batch: {exc})")
            return result

        return run

    def report(self, event: dict[str, Any], result: InvokeResult) -> None:
        if result.error or not isinstance(result.payload, dict):
            say(f"  S3 function error on a batch of {len(event['Records'])}: retried after the visibility timeout")
            return
        failed = {f["itemIdentifier"] for f in result.payload.get("batchItemFailures", [])}
        for record in event["Records"]:
            body = json.loads(record["body"])
            for s3_record in body.get("Records", []) if isinstance(body, dict) else []:
                s3 = s3_record["s3"]
                pk = item.pk(s3["bucket"]["name"], unquote_plus(s3["object"]["key"]))
                if record["messageId"] in failed:
                    say(f"  {pk}: not processed yet, SQS retries it")
                elif (stored := self.sink.get(pk)) is not None:
                    say(format_item(pk, stored, self.index))
                elif s3_record.get("eventName", "").startswith("ObjectRemoved"):
                    say(f"  {pk}: deleted (its item is gone)")
                else:
                    say(f"  {pk}: no item (stale or duplicate notification)")


# --- the API -------------------------------------------------------------------------------------------
SIGN = True  # the front requires SigV4 (ApiAuth=AWS_IAM, the template's default); --api-auth none turns it off


def signed_headers(method: str, url: str, data: bytes, content_type: str | None) -> dict[str, str]:
    """SigV4 for execute-api with the local stack's credentials, as awscurl and the AWS SDKs sign."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method=method, url=url, data=data, headers={"Content-Type": content_type} if content_type else {}
    )
    keys = CREDENTIALS
    creds = Credentials(keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"], keys.get("AWS_SESSION_TOKEN"))
    SigV4Auth(creds, "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


def http(method: str, url: str, data: bytes | None = None, content_type: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback http only
    if content_type:
        request.add_header("Content-Type", content_type)
    if SIGN:
        for name, value in signed_headers(method, url, data or b"", content_type).items():
            request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:  # noqa: S310
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def call_api(gateway: ApiGateway, photo: Path, stored: StoredItem | None, index: VectorIndex | None = None) -> bool:
    say(f"==> POST {gateway.url}/embed  ({photo.name}, {photo.stat().st_size} bytes, Content-Type image/jpeg)")
    t0 = time.perf_counter()
    status, body = http("POST", f"{gateway.url}/embed", photo.read_bytes(), "image/jpeg")
    ms = (time.perf_counter() - t0) * 1e3
    if status != 200 or not isinstance(body, dict) or "embedding" not in body:
        say(f"  API call failed: HTTP {status} {body}")
        return False
    vec = np.asarray(body["embedding"], np.float64)
    first = ", ".join(f"{v:+.4f}" for v in vec[:6])
    say(
        f"  HTTP {status} in {ms:.0f} ms: model {body['model']}  dim {body['dim']}  norm {body['norm']:.4f}  "
        f"|embedding| {np.linalg.norm(vec):.6f}  {body['width']}x{body['height']}\n      first values [{first}, ...]"
    )
    stored_vec = indexing.stored_vector(stored, index)[0] if stored is not None else None
    if stored_vec is not None:
        item_vec = stored_vec.astype(np.float64)
        cos = float(vec @ item_vec / (np.linalg.norm(vec) * np.linalg.norm(item_vec)))
        say(f"      cosine to the S3 pipeline's item of the same photo: {cos:.6f}")
    return bool(len(vec) == body["dim"] and abs(np.linalg.norm(vec) - 1) < 1e-3)


def call_search(gateway: ApiGateway, photo: Path, expected_key: str) -> bool:
    """One text query and one query by image through ``POST /search``: the ranked keys; the image's own
    object must rank first (the index holds its vector, and the query embeds the same bytes: score 1, shared
    only with copies of the same bytes)."""
    queries = (
        ("text", {"text": "a photo of a flower", "k": 5}),
        (f"image {photo.name}", {"image": base64.b64encode(photo.read_bytes()).decode(), "k": 5}),
    )
    best: list[str] = []
    for label, payload in queries:
        say(f"==> POST {gateway.url}/search  (query by {label}, k={payload['k']})")
        status, body = http("POST", f"{gateway.url}/search", json.dumps(payload).encode(), "application/json")
        if status != 200 or not isinstance(body, dict):
            say(f"  search failed: HTTP {status} {body}")
            return False
        for rank, hit in enumerate(body["results"], 1):
            size = f"{hit['width']}x{hit['height']}"
            say(f"  {rank}. s3://{hit['bucket']}/{hit['key']}  score {hit['score']:+.4f}  {size}")
        best = [hit["key"] for hit in body["results"] if hit["score"] > 0.9999]
    return expected_key in best


# --- instructions --------------------------------------------------------------------------------------
def instructions(stack: MotoStack, gateway: ApiGateway) -> str:
    n, ep, py = stack.names, stack.endpoint, shlex.quote(sys.executable)
    vep = stack.vectors_endpoint
    creds = f"AWS_ACCESS_KEY_ID={CREDENTIALS['AWS_ACCESS_KEY_ID']} AWS_SECRET_ACCESS_KEY="
    creds += f"{CREDENTIALS['AWS_SECRET_ACCESS_KEY']} AWS_DEFAULT_REGION={REGION}"
    client = (
        f"endpoint_url='{ep}', region_name='{REGION}', aws_access_key_id='{CREDENTIALS['AWS_ACCESS_KEY_ID']}', "
        f"aws_secret_access_key='{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}'"
    )
    upload_key = f"{UPLOAD_PREFIX}photo.jpg"
    curl = "awscurl --service execute-api --region " + REGION if SIGN else "curl"
    auth_note = ", IAM auth as deployed: requests signed with the credentials above" if SIGN else ""
    aws_note = "" if shutil.which("aws") else "   (awscli is not installed here: pip install awscli, or use boto3)"
    return f"""
Upload more photos: each one becomes a DynamoDB item within seconds, printed here as it lands.
  export {creds}
  aws --endpoint-url {ep} s3 cp photo.jpg s3://{n.bucket}/{UPLOAD_PREFIX}{aws_note}
  {py} -c "import boto3; boto3.client('s3', {client}).upload_file('photo.jpg', '{n.bucket}', '{upload_key}')"
  (deleting an object deletes its item: aws --endpoint-url {ep} s3 rm s3://{n.bucket}/{UPLOAD_PREFIX}photo.jpg)

Embed through the HTTP API (API Gateway HTTP API v2 front -> API function under the RIE){auth_note}:
  {curl} -X POST {gateway.url}/embed -H 'Content-Type: image/jpeg' -d @photo.jpg
  {curl} {gateway.url}/health        {curl} {gateway.url}/model
  {curl} -X POST {gateway.url}/embed/text -H 'Content-Type: application/json' -d '{{"texts": ["a cat"]}}'
  {curl} -X POST {gateway.url}/embed -H 'Content-Type: application/json' \\
       -d '{{"images": [{{"s3": "s3://{n.bucket}/{SAMPLE_PREFIX}china.jpg"}}]}}'

Search the vector index (S3 Vectors in moto; QueryVectors is emulated locally, see infra/local/vector_query.py):
  {curl} -X POST {gateway.url}/search -H 'Content-Type: application/json' -d '{{"text": "a red flower", "k": 3}}'
  {curl} -X POST {gateway.url}/search -H 'Content-Type: application/json' \\
       -d '{{"s3": "s3://{n.bucket}/{SAMPLE_PREFIX}china.jpg", "k": 3}}'

Read an item back, its vector from the item or (ItemVector=none, the default with an index) the index:
  {py} -m infra.cli item s3://{n.bucket}/{SAMPLE_PREFIX}china.jpg --endpoint-url {ep} \\
       --vectors-endpoint-url {vep} --table {n.table} --vector-bucket {n.vector_bucket} --index {n.vector_index}
  aws --endpoint-url {ep} dynamodb scan --table-name {n.table} --projection-expression 'pk, model, dim, norm'"""


# --- signals -------------------------------------------------------------------------------------------
class Stop(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM: unwinds through every cleanup."""


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], None]]:
    """SIGINT/SIGTERM raise ``Stop`` in the main thread; yields ``shield``, which makes further signals only
    say "still stopping" (call it before the cleanup, which a second Ctrl-C must not interrupt)."""

    def shield() -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, lambda *_: say("  (still stopping...)"))

    if threading.current_thread() is not threading.main_thread():
        yield shield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        shield()
        raise Stop(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield shield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- main ----------------------------------------------------------------------------------------------
def uploads(photos: list[Path], samples: bool) -> list[tuple[str, Path]]:
    """(key, file) pairs: the scikit-learn sample JPEGs under samples/ (one key with a space, to show the
    URL-decoding of notification keys), then the user's files under photos/."""
    from layer.convert.calibration import sample_photo_paths

    pairs: list[tuple[str, Path]] = []
    if samples:
        paths = sample_photo_paths()
        pairs += [(f"{SAMPLE_PREFIX}{p.name}", p) for p in paths]
        if paths:
            pairs.append((f"{SAMPLE_PREFIX}{paths[0].stem} copy{paths[0].suffix}", paths[0]))
    pairs += [(f"{UPLOAD_PREFIX}{p.name}", p) for p in photos]
    return pairs


def main(argv: list[str]) -> int:
    args = arg_parser().parse_args(argv)
    global SIGN  # noqa: PLW0603 - one process, one API front: its auth mode, set once before it starts
    SIGN = args.api_auth == "AWS_IAM"
    missing = [str(p) for p in args.photos if not p.is_file()]
    if missing:
        say(f"error: no such file: {', '.join(missing)}")
        return 2
    try:
        manifest = ensure_model(args.model, args.source)
    except ModelUnavailable as exc:
        say(f"error: {exc}")
        return exc.status
    describe_model(args.model, manifest)
    cleanup = ExitStack()
    with stop_on_signals() as shield:
        try:
            return run(args, cleanup)
        except Stop:
            say("\n==> stopping")
            return 0
        except KeyboardInterrupt:  # not the main thread: no handlers of ours
            say("\n==> stopping")
            return 130
        except PortInUse as exc:
            say(f"error: {exc}")
            return 2
        finally:
            shield()
            cleanup.close()


def run(args: argparse.Namespace, cleanup: ExitStack) -> int:
    """Start everything (each piece registers its stop on ``cleanup``), run the demo, then serve."""
    model_dir = str(args.model.resolve())
    logs = Path(tempfile.mkdtemp(prefix="clip-lambda-local-"))
    moto_port = choose_port(args.moto_port, DEFAULT_MOTO_PORT, "moto")
    api_port = choose_port(args.port, DEFAULT_API_PORT, "API")
    dimension = Manifest.read(args.model).dim  # the vector index's, as EmbeddingDimension on a deploy
    stack = MotoStack(names=StackNames(dimension=dimension), port=moto_port, log_path=logs / "moto.log")
    cleanup.callback(stop_and_say, "moto server", stack.stop)
    stack.start()
    say(f"==> moto server (S3, SQS, DynamoDB) on {HOST}:{stack.port}")
    n = stack.names
    say(f"    bucket {n.bucket} -> queue {n.queue} (DLQ {n.dlq} after {n.max_receive_count} receives)")
    say(f"    -> table {n.table}")

    functions = []
    for handler, name in (("handler.s3.lambda_handler", "clip-s3"), ("handler.api.lambda_handler", "clip-api")):
        env = stack.function_env(MODEL_DIR=model_dir, POWERTOOLS_METRICS_NAMESPACE="ClipLambdaLocal")
        fn = LocalFunction(handler, env=env, name=name, log_path=logs / f"{name}.log")
        cleanup.callback(stop_and_say, f"{name} (RIE)", fn.stop)
        fn.start()
        say(f"==> {name}: {handler} under the RIE at {fn.url}")
        functions.append(fn)
    s3_fn, api_fn = functions

    index = local_index(stack)
    reporter = ItemReporter(stack.client("dynamodb"), n.table, index)
    poller = SqsPoller(
        stack.client("sqs"), stack.queue_url, stack.queue_arn, reporter.wrap(s3_fn.invoke), wait_seconds=1
    )
    cleanup.callback(stop_and_say, "SQS poller", poller.stop)
    poller.start()
    say(f"==> SQS event source mapping: {n.queue} -> clip-s3 (batches of up to {poller.batch_size})")

    keys = {CREDENTIALS["AWS_ACCESS_KEY_ID"]: CREDENTIALS["AWS_SECRET_ACCESS_KEY"]} if SIGN else None
    gateway = ApiGateway(api_fn.invoke, port=api_port, routes=TEMPLATE_ROUTES, iam=keys, region=REGION)
    cleanup.callback(stop_and_say, "API front", gateway.stop)
    gateway.start()
    auth = "IAM auth: SigV4-signed requests only, as ApiAuth=AWS_IAM" if SIGN else "no auth, as ApiAuth=NONE"
    say(f"==> HTTP API front on {gateway.url}  ({', '.join(TEMPLATE_ROUTES)}) -> clip-api; {auth}")
    say(f"    logs in {logs}")
    warm = threading.Thread(target=http, args=("GET", f"{gateway.url}/health"), daemon=True)
    warm.start()  # the API function's INIT (model load) overlaps the S3 pipeline's

    pairs = uploads(args.photos, not args.no_samples)
    ok = True
    s3 = stack.client("s3")
    if pairs:
        say(f"==> uploading {len(pairs)} objects to s3://{n.bucket}/")
    uploaded_at = time.monotonic()
    for key, path in pairs:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.upload_file(str(path), n.bucket, key, ExtraArgs={"ContentType": content_type})
        say(f"    {path} -> s3://{n.bucket}/{key}")
    pks = [item.pk(n.bucket, key) for key, _ in pairs]
    items: dict[str, StoredItem] = {}
    if pks:
        say("==> waiting for their DynamoDB items (the first invoke includes INIT: the model load)")
        sink = DynamoDBSink(stack.client("dynamodb"), n.table)
        items = wait_for_items(sink, pks, args.timeout, since=uploaded_at, index=index)
        for pk in pks:
            if pk not in items:
                say(f"  {pk}: NO ITEM after {args.timeout:.0f}s (see {logs}/clip-s3.log)")
        ok = len(items) == len(pks) and all(it.has_embedding for it in items.values())
        ok = call_api(gateway, pairs[0][1], items.get(pks[0]), index) and ok
        ok = call_search(gateway, pairs[0][1], pairs[0][0]) and ok
    warm.join(timeout=1)

    if args.once:
        say(f"==> demo {'OK' if ok else 'FAILED'}; stopping (--once)")
        return 0 if ok else 1
    gallery = cleanup.enter_context(serve_local_stack(gateway.url, stack))
    say(instructions(stack, gateway))
    say("\n==> serving. Ctrl-C stops everything this started.")
    say(f"==> gallery: {gallery.url}  (search, browse by tag, upload: open it in a browser)")
    reporter.enabled = True
    while True:
        time.sleep(3600)


def stop_and_say(what: str, stop: Callable[[], None]) -> None:
    stop()
    say(f"    stopped {what}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
