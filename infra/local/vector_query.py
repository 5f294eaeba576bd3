"""LOCAL EMULATION of S3 Vectors' QueryVectors, which moto does not implement: a small HTTP front on 127.0.0.1
that forwards every s3vectors request to moto and answers QueryVectors itself.

    with VectorQueryFront(target=moto_endpoint).start() as front:
        env["AWS_ENDPOINT_URL_S3VECTORS"] = front.endpoint

QueryVectors is answered with the AWS request and response shapes (``topK``, ``queryVector.float32``,
``filter``, ``returnMetadata``, ``returnDistance`` → ``{"vectors": [{"key", "distance", "metadata"}],
"distanceMetric"}``) by an **exact brute-force search** over every vector moto holds in the index, read with
ListVectors (data and metadata): distance ``1 - cos(q, v)`` for a cosine index, ``|q - v|`` for a euclidean
one, ascending, ties by key. Real S3 Vectors is approximate (an ANN index): its recall is below 1 where this
is exact, so tests that compare with it compare rankings, not recall.

Filters: the subset of the S3 Vectors filter language this supports (anything else is a
``ValidationException``): ``{"field": value}`` (equality), ``$eq``, ``$ne``, ``$in``, ``$nin``, ``$exists``,
``$gt``, ``$gte``, ``$lt``, ``$lte`` on one field, several fields in one object (all must hold), ``$and``,
``$or``. As in S3 Vectors, ``$eq`` against a list value holds if any element is equal (``$in``: any element
in the list; ``$ne``/``$nin``: the negation of those). A filter on a key the index declared non-filterable
(seen when its CreateIndex passed through this front) is refused, as S3 Vectors refuses it.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from infra.local.net import HOST, LoopbackHttpServer

MAX_TOP_K = 100
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_COMPARE = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}


class QueryError(ValueError):
    """A request S3 Vectors would refuse: answered as its ``ValidationException`` (400)."""


# ------------------------------------------------------------------------------------------------ filters
def matches(flt: Any, metadata: Mapping[str, Any]) -> bool:
    """Whether a vector's metadata satisfies a filter (the subset in the module docstring)."""
    if not isinstance(flt, Mapping) or not flt:
        raise QueryError(f"a filter is a non-empty object, got {flt!r}")
    return all([_clause(name, cond, metadata) for name, cond in flt.items()])  # every clause: all are checked


def _clause(name: str, cond: Any, metadata: Mapping[str, Any]) -> bool:
    if name in ("$and", "$or"):
        if not isinstance(cond, list) or not cond:
            raise QueryError(f"{name} takes a non-empty list of filters")
        results = [matches(sub, metadata) for sub in cond]
        return all(results) if name == "$and" else any(results)
    if name.startswith("$"):
        raise QueryError(f"unsupported operator {name}")
    if not isinstance(cond, Mapping):
        cond = {"$eq": cond}
    if not cond:
        raise QueryError(f"empty condition on {name}")
    return all([_operator(op, arg, name, metadata) for op, arg in cond.items()])


def _operator(op: str, arg: Any, name: str, metadata: Mapping[str, Any]) -> bool:
    present = name in metadata
    value = metadata.get(name)
    values = value if isinstance(value, list) else [value]
    if op == "$exists":
        if not isinstance(arg, bool):
            raise QueryError("$exists takes a boolean")
        return present is arg
    if op in ("$eq", "$ne"):
        if isinstance(arg, list | dict) or arg is None:
            raise QueryError(f"{op} takes a string, number or boolean")
        equal = present and arg in values
        return equal if op == "$eq" else not equal
    if op in ("$in", "$nin"):
        if not isinstance(arg, list) or not arg:
            raise QueryError(f"{op} takes a non-empty list")
        found = present and any(v in arg for v in values)
        return found if op == "$in" else not found
    if op in _COMPARE:
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            raise QueryError(f"{op} takes a number")
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return present and any(bool(_COMPARE[op](v, arg)) for v in numbers)
    raise QueryError(f"unsupported operator {op}")


def filtered_keys(flt: Any) -> set[str]:
    """Every metadata key a filter names."""
    if not isinstance(flt, Mapping):
        return set()
    keys: set[str] = set()
    for name, cond in flt.items():
        if name in ("$and", "$or"):
            for sub in cond if isinstance(cond, list) else []:
                keys |= filtered_keys(sub)
        else:
            keys.add(name)
    return keys


# ------------------------------------------------------------------------------------------------ ranking
def rank(request: Mapping[str, Any], listed: Iterable[Mapping[str, Any]], *, metric: str, dimension: int,
         non_filterable: Iterable[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The QueryVectors response for ``request`` over ``listed`` (ListVectors items with data and metadata)."""
    top_k = request.get("topK")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise QueryError(f"topK must be an integer from 1 to {MAX_TOP_K}")
    query = np.asarray((request.get("queryVector") or {}).get("float32") or [], dtype=np.float64)
    if query.shape != (dimension,):
        raise QueryError(f"the query vector has {query.size} dimensions; the index has {dimension}")
    flt = request.get("filter")
    if flt is not None:
        refused = filtered_keys(flt) & set(non_filterable)
        if refused:
            raise QueryError(f"non-filterable metadata keys cannot be filtered on: {sorted(refused)}")
        matches(flt, {})  # validate the whole filter once, even over an empty index
    scored: list[tuple[float, str, Mapping[str, Any]]] = []
    for vector in listed:
        metadata = vector.get("metadata") or {}
        if flt is not None and not matches(flt, metadata):
            continue
        data = np.asarray(vector["data"]["float32"], dtype=np.float64)
        scored.append((distance(query, data, metric), str(vector["key"]), metadata))
    scored.sort(key=lambda s: (s[0], s[1]))
    out = []
    for dist, key, metadata in scored[:top_k]:
        hit: dict[str, Any] = {"key": key}
        if request.get("returnDistance"):
            hit["distance"] = dist
        if request.get("returnMetadata"):
            hit["metadata"] = dict(metadata)
        out.append(hit)
    return {"vectors": out, "distanceMetric": metric}


def distance(q: np.ndarray, v: np.ndarray, metric: str) -> float:
    if metric == "euclidean":
        return float(np.linalg.norm(q - v))
    denominator = float(np.linalg.norm(q) * np.linalg.norm(v))
    return 1.0 - (float(q @ v) / denominator if denominator else 0.0)


# ------------------------------------------------------------------------------------------------ HTTP front
# S3 Vectors' limits on one request (moto does not check them): vectors per PutVectors, keys per
# DeleteVectors and GetVectors.
REQUEST_LIMITS = {"PutVectors": ("vectors", 500), "DeleteVectors": ("keys", 500), "GetVectors": ("keys", 100)}


def logical_bytes(vector: Mapping[str, Any]) -> int:
    """A vector's logical size (what S3 Vectors' PUT price is per GB of): 4 bytes a dimension, its key, and
    its metadata as JSON."""
    data = (vector.get("data") or {}).get("float32") or []
    metadata = json.dumps(vector.get("metadata") or {}, separators=(",", ":"))
    return 4 * len(data) + len(str(vector.get("key", "")).encode()) + len(metadata.encode())


def request_limit(operation: str, body: bytes) -> str | None:
    """The ValidationException message S3 Vectors would answer a request over its size limit with, or None."""
    if operation not in REQUEST_LIMITS:
        return None
    member, limit = REQUEST_LIMITS[operation]
    try:
        n = len(json.loads(body or b"{}").get(member) or [])
    except (ValueError, AttributeError):
        return None  # moto answers a malformed body itself
    if n > limit:
        return (
            f"1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have "
            f"length less than or equal to {limit}"
        )
    return None


_REGION = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/")


@dataclass
class VectorQueryFront(LoopbackHttpServer):
    """Forwards s3vectors requests to moto (``target``), answers QueryVectors (module docstring)."""

    target: str
    port: int = 0
    queries: int = 0  # QueryVectors answered (tests read it)
    calls: Counter[str] = field(default_factory=Counter)  # requests by operation (PutVectors, ...), all forwarded
    vectors_written: int = 0  # vectors in the PutVectors requests that moto accepted
    put_bytes: int = 0  # their logical size as S3 Vectors bills it: float32 data + key + metadata (JSON)
    _non_filterable: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, region: str) -> Any:
        """A client of moto itself (no front), for the listing behind a query."""
        if region not in self._clients:
            import boto3

            key = "testing"  # moto's dummy credentials
            session: Any = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=key, region_name=region)
            self._clients[region] = session.client("s3vectors", endpoint_url=self.target)
        return self._clients[region]

    def answer(self, request: Mapping[str, Any], region: str) -> dict[str, Any]:
        """QueryVectors over what moto holds now."""
        client = self.client(region)
        where = {k: request[k] for k in ("vectorBucketName", "indexName", "indexArn") if request.get(k)}
        index = client.get_index(**where)["index"]
        listed: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {**where, "returnData": True, "returnMetadata": True}
        for _ in range(100_000):  # bounded pagination (moto answers in one page today)
            page = client.list_vectors(**kwargs)
            listed += page["vectors"]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        non_filterable = self._non_filterable.get((index["vectorBucketName"], index["indexName"]), [])
        self.queries += 1
        return rank(request, listed, metric=index["distanceMetric"], dimension=int(index["dimension"]),
                    non_filterable=non_filterable)  # fmt: skip

    def remember(self, request: Mapping[str, Any]) -> None:
        """A CreateIndex passing through: its non-filterable keys (moto does not keep them)."""
        config = request.get("metadataConfiguration") or {}
        key = (str(request.get("vectorBucketName", "")), str(request.get("indexName", "")))
        self._non_filterable[key] = list(config.get("nonFilterableMetadataKeys") or [])

    def start(self) -> VectorQueryFront:
        front = self
        target = urlsplit(self.target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                operation = path.strip("/")
                front.calls[operation] += 1
                if self.command == "POST" and path == "/QueryVectors":
                    self._query(body)
                    return
                refused = request_limit(operation, body)
                if refused:
                    self._error(400, "ValidationException", refused)
                    return
                status, headers, data = self._forward(body)
                if operation == "PutVectors" and status == 200:
                    written = json.loads(body or b"{}").get("vectors") or []
                    front.vectors_written += len(written)
                    front.put_bytes += sum(logical_bytes(v) for v in written)
                if self.command == "POST" and path == "/CreateIndex" and status == 200:
                    front.remember(json.loads(body or b"{}"))
                self._reply(status, headers, data)

            def _query(self, body: bytes) -> None:
                found = _REGION.search(self.headers.get("Authorization", ""))
                try:
                    out = front.answer(json.loads(body or b"{}"), found.group(1) if found else "us-east-1")
                except QueryError as exc:
                    self._error(400, "ValidationException", str(exc))
                    return
                except Exception as exc:  # moto's own error (no such index, ...) goes back as it is
                    response = getattr(exc, "response", {})
                    code = response.get("Error", {}).get("Code", "InternalServerException")
                    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                    self._error(int(status), str(code), str(exc))
                    return
                self._reply(200, [("Content-Type", "application/json")], json.dumps(out).encode())

            def _error(self, status: int, code: str, message: str) -> None:
                out = json.dumps({"__type": code, "message": message}).encode()
                self._reply(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)], out)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(target.hostname or HOST, target.port or 80, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    return resp.status, resp.getheaders(), resp.read()
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return self.serve(Handler, "vector-query")
