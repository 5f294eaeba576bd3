"""The gallery's HTTP server, on 127.0.0.1 only: the page, the signed API proxy and the page's own calls.

    GET  /                      the page (static/index.html; static/style.css, static/app.js: no build, no CDN)
    ANY  /api/<route>           the stack's API, every request signed with SigV4 (``infra.ui.proxy``)
    GET  /ui/config             the target, the bucket, how uploads go (direct to S3 or through here)
    POST /ui/thumbnails         {"objects": [{"bucket", "key"}]} -> {"urls": [presigned GET | null]}
    POST /ui/uploads            {"name", "type"} -> where and how to PUT the file (a presigned URL, or /ui/upload)
    PUT  /ui/upload?key=K       the server-side upload (when the bucket's CORS does not admit the browser)
    GET  /ui/item?key=K         what the S3 function made of the object: pending, embedded or failed

Errors are the API's shape, ``{"error": {"code", "message"}}``. A request with the header ``X-Clip-Gallery``
(every call of the page) is answered 200 with ``{"status", "body"}``, the API's status and body: Chromium logs
every 4xx/5xx fetch as a console error, and an expected refusal (a file that is not an image) is an answer
the page shows, not a failure of the page. Without the header, ``/api/`` is a plain proxy (status, body and
content type as the API sent them).

The server is a credential oracle for whoever can reach it, so it answers only its own origin: a ``Host``
other than 127.0.0.1/localhost on its port (DNS rebinding) or a foreign ``Origin`` (another site's page
posting to it) is refused with 403 before anything is signed.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from infra.local.net import HOST, LoopbackHttpServer
from infra.ui import objects
from infra.ui.proxy import ApiProxy, ApiResponse, error_response
from infra.ui.target import Target, UploadMode, local_target, upload_mode

ENVELOPE_HEADER = "X-Clip-Gallery"
API_BODY_LIMIT = 10 * 1024 * 1024 + 64 * 1024  # API Gateway's 10 MB request limit, and room for its own 413
UI_BODY_LIMIT = 1024 * 1024
MAX_THUMBNAILS = 100  # POST /search's largest k
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_UPLOAD_KEY = re.compile(re.escape(objects.UPLOAD_PREFIX) + r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,120}")


def static_file(name: str) -> bytes | None:
    """A file of the package's static/ directory (package data), or None."""
    if not _STATIC_NAME.match(name) or "." + name.rsplit(".", 1)[-1] not in STATIC_TYPES:
        return None
    path = resources.files("infra.ui").joinpath("static", name)
    return path.read_bytes() if path.is_file() else None


def _json(status: int, payload: Any) -> ApiResponse:
    return ApiResponse(status, [("Content-Type", "application/json")], json.dumps(payload).encode())


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = error_response(status, code, message)


@dataclass
class Gallery(LoopbackHttpServer):
    """The gallery of ``target`` on 127.0.0.1:``port`` (0: a free one; see ``url`` after ``start``)."""

    target: Target
    port: int = 0
    upload: UploadMode | Literal["auto"] = "auto"
    timeout: float = 120.0
    access_log: Callable[[str], None] | None = None
    upload_mode: UploadMode = "server"
    upload_why: str = ""
    _proxy: ApiProxy | None = None
    _s3: Any = None
    _ddb: Any = None
    _csp: str = ""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def origins(self) -> tuple[str, ...]:
        return (f"http://{HOST}:{self.port}", f"http://localhost:{self.port}")

    def start(self) -> Gallery:
        t = self.target
        self._proxy = ApiProxy(t.api_url, t.region, t.credentials if t.signed else None, timeout=self.timeout)
        self._s3 = t.client("s3") if t.bucket else None
        self._ddb = t.client("dynamodb") if t.table else None
        self._csp = content_security_policy(self._s3, t.bucket)
        self.serve(_handler(self), "gallery")
        if self.upload == "auto":
            self.upload_mode, self.upload_why = upload_mode(t, self.origins[0], self._s3)
        else:
            self.upload_mode, self.upload_why = self.upload, f"--upload {self.upload}"
        return self

    # --- the page's calls ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        t = self.target
        return {
            "target": t.label,
            "bucket": t.bucket,
            "table": t.table is not None,
            "signed": t.signed,
            "upload": self.upload_mode if t.bucket else None,
            "upload_why": self.upload_why,
            "upload_prefix": objects.UPLOAD_PREFIX,
        }

    def thumbnails(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = request.get("objects")
        if not isinstance(wanted, list) or len(wanted) > MAX_THUMBNAILS:
            raise _Refused(400, "invalid_request", f"objects: a list of at most {MAX_THUMBNAILS} {{bucket, key}}")
        urls: list[str | None] = []
        for obj in wanted:
            bucket, key = (obj.get("bucket"), obj.get("key")) if isinstance(obj, dict) else (None, None)
            # Only the stack's bucket: the page cannot make this server presign reads of any other.
            ok = self._s3 is not None and bucket == self.target.bucket and isinstance(key, str) and key
            urls.append(objects.presign_get(self._s3, str(bucket), str(key)) if ok else None)
        return {"urls": urls}

    def new_upload(self, request: dict[str, Any]) -> dict[str, Any]:
        bucket = self.target.bucket
        if self._s3 is None or bucket is None:
            raise _Refused(409, "uploads_off", "no bucket is known for this API: start the gallery with --bucket")
        name, kind = request.get("name"), request.get("type") or "application/octet-stream"
        if not isinstance(name, str) or not isinstance(kind, str) or len(kind) > 200:
            raise _Refused(400, "invalid_request", 'expected {"name": file name, "type": media type}')
        key = objects.upload_key(name)
        if self.upload_mode == "direct":
            url = objects.presign_put(self._s3, bucket, key, kind)
        else:
            url = f"/ui/upload?key={quote(key, safe='')}"
        return {"key": key, "s3": f"s3://{bucket}/{key}", "via": self.upload_mode, "method": "PUT", "url": url,
                "headers": {"Content-Type": kind}}  # fmt: skip

    def put_upload(self, key: str, body: bytes, content_type: str) -> dict[str, Any]:
        if self._s3 is None or self.target.bucket is None:
            raise _Refused(409, "uploads_off", "no bucket is known for this API: start the gallery with --bucket")
        if not _UPLOAD_KEY.fullmatch(key):  # the keys upload_key makes: the page cannot write anywhere else
            raise _Refused(400, "invalid_key", f"uploads go under {objects.UPLOAD_PREFIX}, not to {key!r}")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            etag = objects.put_upload(self._s3, self.target.bucket, key, body, content_type)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise _Refused(502, "upload_failed", f"PutObject: {error.get('Code')}: {error.get('Message')}") from exc
        except BotoCoreError as exc:
            raise _Refused(502, "upload_failed", f"PutObject: {exc}") from exc
        return {"key": key, "etag": etag}

    def item(self, key: str) -> dict[str, Any]:
        if self._ddb is None or self.target.table is None or self.target.bucket is None:
            raise _Refused(409, "no_table", "no table is known for this API: start the gallery with --table")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return objects.item_state(self._ddb, self.target.table, self.target.bucket, key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise _Refused(502, "table_unavailable", f"GetItem: {error.get('Code')}: {error.get('Message')}") from exc
        except BotoCoreError as exc:
            raise _Refused(502, "table_unavailable", f"GetItem: {exc}") from exc

    def route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> ApiResponse:
        """One request of the page (``headers`` lower-cased), its answer before any envelope."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query)
        if path.startswith("/api/"):
            if self._proxy is None:
                raise RuntimeError("the gallery is not started")
            return self._proxy.forward(method, target[len("/api") :], headers, body)
        try:
            if (method, path) == ("GET", "/ui/config"):
                return _json(200, self.config())
            if (method, path) == ("GET", "/ui/item"):
                return _json(200, self.item(query.get("key", [""])[0]))
            if (method, path) == ("PUT", "/ui/upload"):
                kind = headers.get("content-type") or "application/octet-stream"
                return _json(200, self.put_upload(query.get("key", [""])[0], body, kind))
            if method == "POST" and path in ("/ui/thumbnails", "/ui/uploads"):
                request = _request_json(body)
                return _json(200, self.thumbnails(request) if path == "/ui/thumbnails" else self.new_upload(request))
        except _Refused as refused:
            return refused.response
        return error_response(404, "not_found", f"no route {method} {path}")


def _request_json(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body or b"{}")
    except ValueError as exc:
        raise _Refused(400, "invalid_request", f"the body is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise _Refused(400, "invalid_request", "the body must be a JSON object")
    return request


def content_security_policy(s3: Any, bucket: str | None) -> str:
    """Scripts and styles from the page's own origin only; images and uploads also from the bucket's
    presigned URLs' origin (moto's, or the regional S3 endpoint's)."""
    bucket_origin = ""
    if s3 is not None and bucket:
        split = urlsplit(objects.presign_get(s3, bucket, "x", expires=60))
        bucket_origin = f" {split.scheme}://{split.netloc}"
    return (
        f"default-src 'self'; img-src 'self' blob: data:{bucket_origin}; connect-src 'self'{bucket_origin}; "
        "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    )


def _handler(gallery: Gallery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            if gallery.access_log is not None:
                gallery.access_log(f"{self.address_string()} {format % args}")

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _answer(self, response: ApiResponse) -> None:
            if ENVELOPE_HEADER.lower() in (k.lower() for k in self.headers):
                payload = {"status": response.status, "body": response.json()}
                response = _json(200, payload)
            self._send(response.status, response.headers, response.body)

        def _own_origin(self) -> bool:
            host = self.headers.get("Host", "")
            origin = self.headers.get("Origin")
            return f"http://{host}" in gallery.origins and (origin is None or origin in gallery.origins)

        def _body(self, limit: int) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise _Refused(411, "length_required", "send the body with a Content-Length")
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                raise _Refused(413, "payload_too_large", f"the body is {length} bytes; the limit is {limit}")
            return self.rfile.read(length)

        def _serve(self) -> None:
            path = urlsplit(self.path).path
            if not self._own_origin():
                self.close_connection = True
                self._answer(error_response(403, "foreign_origin", "this gallery answers its own page only"))
                return
            if self.command in ("GET", "HEAD") and not path.startswith(("/api/", "/ui/")):
                self._static(path)
                return
            limit = API_BODY_LIMIT if path.startswith("/api/") else UI_BODY_LIMIT
            if path == "/ui/upload":
                limit = objects.MAX_UPLOAD_BYTES
            try:
                body = self._body(limit)
            except _Refused as refused:
                self.close_connection = True  # the unread rest of the body must not be read as a request
                self._answer(refused.response)
                return
            except ValueError:
                self.close_connection = True
                self._answer(error_response(400, "invalid_request", "bad Content-Length"))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._answer(gallery.route(self.command, self.path, headers, body))

        def _static(self, path: str) -> None:
            name = {"/": "index.html", "/favicon.ico": "favicon.svg"}.get(path, path.removeprefix("/static/"))
            data = static_file(name) if path in ("/", "/favicon.ico") or path.startswith("/static/") else None
            if data is None:
                self._send(404, [("Content-Type", "text/plain; charset=utf-8")], b"not found\n")
                return
            headers = [("Content-Type", STATIC_TYPES["." + name.rsplit(".", 1)[-1]])]
            if name.endswith(".html"):
                headers += [("Content-Security-Policy", gallery._csp), ("Referrer-Policy", "no-referrer")]
            self._send(200, headers, data)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    return Handler


def serve_local_stack(api_url: str, moto: Any, port: int = 0) -> Gallery:
    """The gallery of a running local stack (``clip-lambda local`` starts it after its demo): its API front
    at ``api_url``, its ``MotoStack`` (endpoint, bucket, table), on a free port unless ``port``; started."""
    target = local_target(api_url, moto.endpoint, bucket=moto.names.bucket, table=moto.names.table)
    return Gallery(target, port=port).start()
