"""``clip-lambda search``: the images of a vector index nearest to a text or an image, from the command line.

    clip-lambda search --model build/model --query "a red bicycle" [--k 10] [--prefix cats/]
    clip-lambda search --model build/model --image photo.jpg
        [--vector-bucket B --index I | --stack clip-lambda] [--endpoint-url http://127.0.0.1:PORT]

The query is embedded here, with the model directory's own engine (the text tower for ``--query``), and
sent to the index with QueryVectors: the same vectors and the same index the API's ``POST /search`` uses, and
like it, only vectors of the same model are answered.
The index is named by ``--vector-bucket``/``--index``, by the stack's outputs (``--stack``), or by the
``VECTOR_BUCKET``/``VECTOR_INDEX`` environment variables (what ``make run`` prints for its local index).
Prints one JSON object per result, nearest first: ``{"rank", "key", "bucket", "score", "width", "height"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO


def index_names(args: argparse.Namespace, session: Any) -> tuple[str, str]:
    if args.vector_bucket and args.index:
        return args.vector_bucket, args.index
    if args.stack:
        stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        arn = outputs.get("VectorIndexArn", "")  # arn:aws:s3vectors:<region>:<account>:bucket/<b>/index/<i>
        parts = arn.split(":", 5)[-1].split("/")
        if len(parts) != 4 or parts[0] != "bucket" or parts[2] != "index":
            raise SystemExit(f"error: stack {args.stack} has no vector index (deployed with VectorIndex=none?)")
        return parts[1], parts[3]
    bucket, index = os.environ.get("VECTOR_BUCKET", ""), os.environ.get("VECTOR_INDEX", "")
    if not (bucket and index):
        raise SystemExit("error: name the index: --vector-bucket and --index, --stack, or VECTOR_BUCKET/VECTOR_INDEX")
    return bucket, index


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clip-lambda search", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", required=True, help="the model directory the index was filled with")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="a text")
    what.add_argument("--image", type=Path, help="an image file")
    ap.add_argument("--k", type=int, default=10, help="results, 1-100")
    ap.add_argument("--prefix", help="only keys under this prefix")
    ap.add_argument("--vector-bucket")
    ap.add_argument("--index")
    ap.add_argument("--stack", help="take the index from this stack's outputs")
    ap.add_argument("--endpoint-url", help="S3 Vectors endpoint (the local stack's)")
    ap.add_argument("--region")
    return ap


def main(argv: list[str] | None = None, *, session: Any = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    if not 1 <= args.k <= 100:
        print("error: --k must be 1-100 (QueryVectors' topK)", file=sys.stderr)
        return 2
    from handler.runtime import BOTO_CONFIG
    from handler.vector_index import S3VectorsIndex
    from layer.embedder import Embedder

    engine = Embedder.from_dir(args.model, text=args.query is not None)
    vector = engine.embed_text(args.query).vector if args.query is not None else engine.embed_one(
        args.image.read_bytes()
    ).vector  # fmt: skip
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=args.region)
    bucket, index = index_names(args, session)
    client = session.client("s3vectors", endpoint_url=args.endpoint_url, config=BOTO_CONFIG)
    # Only this model's vectors: an index can hold another model's (before a backfill re-embeds them), which
    # are not comparable with the query's.
    matches = S3VectorsIndex(client, bucket, index, model=engine.model_id).query(vector, args.k, args.prefix)
    for rank, m in enumerate(matches, 1):
        row = {"rank": rank, "key": m.key, "bucket": m.bucket, "score": round(m.score, 6), "width": m.width,
               "height": m.height}  # fmt: skip
        out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
