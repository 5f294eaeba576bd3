"""``clip-lambda item``: what the stack holds for one object (its DynamoDB item), with its vector from
wherever it lives: the item (``ItemVector=full|float16``) or the vector index (``ItemVector=none``, the
default with an index).

    clip-lambda item s3://bucket/key [--stack clip-lambda | --table T [--vector-bucket B --index I]]
        [--endpoint-url URL] [--vectors-endpoint-url URL] [--region R] [--no-vector]

The table and index are named by the options, by the stack's outputs (``--stack``), or by ``TABLE_NAME`` and
``VECTOR_BUCKET``/``VECTOR_INDEX`` (what ``make run`` prints for the local stack). Prints one JSON object: the
item's attributes (binary ones as base64), ``vector`` (float32 as numbers, or null) and ``vector_from``
(``"item"``, ``"index"`` or null: a failure record, or an index that does not hold this item's vector yet).
Exits 1 when there is no item: the object was never embedded, or was deleted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any, TextIO

from infra.search import index_names


def stack_outputs(session: Any, stack: str) -> dict[str, str]:
    stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def table_name(args: argparse.Namespace, session: Any) -> str:
    if args.table:
        return str(args.table)
    if args.stack:
        return stack_outputs(session, args.stack)["TableName"]
    name = os.environ.get("TABLE_NAME", "")
    if not name:
        raise SystemExit("error: name the table: --table, --stack, or TABLE_NAME")
    return name


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clip-lambda item", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("uri", help="s3://bucket/key, the key as S3 holds it (no %%xx decoding)")
    ap.add_argument("--stack", help="take the table and index from this stack's outputs")
    ap.add_argument("--table")
    ap.add_argument("--vector-bucket")
    ap.add_argument("--index")
    ap.add_argument("--endpoint-url", help="DynamoDB endpoint (the local stack's)")
    ap.add_argument("--vectors-endpoint-url", help="S3 Vectors endpoint (the local stack's)")
    ap.add_argument("--region")
    ap.add_argument("--no-vector", action="store_true", help="the attributes only (no index read)")
    return ap


def plain(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def main(argv: list[str] | None = None, *, session: Any = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    from handler import indexing, item
    from handler.runtime import BOTO_CONFIG
    from handler.sinks.dynamodb import DynamoDBSink
    from handler.vector_index import S3VectorsIndex

    if session is None:
        import boto3

        session = boto3.session.Session(region_name=args.region)
    sink = DynamoDBSink(session.client("dynamodb", endpoint_url=args.endpoint_url, config=BOTO_CONFIG),
                        table_name(args, session))  # fmt: skip
    stored = sink.get(args.uri)
    if stored is None:
        print(f"no item for {args.uri}: never embedded, or deleted", file=sys.stderr)
        return 1
    vector, where = None, None
    if not args.no_vector:
        index = None
        if args.stack or (args.vector_bucket and args.index) or os.environ.get("VECTOR_BUCKET"):
            bucket, name = index_names(args, session)
            client = session.client("s3vectors", endpoint_url=args.vectors_endpoint_url, config=BOTO_CONFIG)
            index = S3VectorsIndex(client, bucket, name)
        vector, where = indexing.stored_vector(stored, index)
    row = {k: plain(v) for k, v in stored.attributes.items() if k != item.EMBEDDING}
    row["vector"] = None if vector is None else [float(x) for x in vector]
    row["vector_from"] = where
    out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
