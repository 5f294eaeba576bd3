"""``clip-lambda ui``: the gallery of a stack, served from 127.0.0.1 until Ctrl-C.

    clip-lambda ui                                  the local stack of `clip-lambda local` (make run)
    clip-lambda ui --stack clip-lambda [--region R] a deployed stack (its ApiUrl, BucketName, TableName outputs)
    clip-lambda ui --api URL [--bucket B] [--table T]   an API by its URL
        [--port 8000] [--upload auto|direct|server] [--unsigned]

A text, an image (dropped, pasted or chosen) or a result ("more like this") queries POST /search; images
dropped on the upload area go to the bucket under uploads/ and appear once the S3 function has embedded them.
Every API request is signed (SigV4, execute-api) with your boto3 credentials (the local stack's for the local
stack); the browser holds none. Prints ``==> gallery: http://127.0.0.1:PORT/``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, TextIO
from urllib.parse import urlsplit

from infra.ui.target import LOCAL_API_URL, LOCAL_ENDPOINT, Target, TargetError

DEFAULT_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-lambda ui", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--port", type=int, default=None, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, or a free "
                   "one if taken; 0: any free port)")  # fmt: skip
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stack", help="a deployed stack: its outputs name the API, the bucket and the table")
    where.add_argument("--api", help=f"the API's URL (a 127.0.0.1 URL: a local stack on other ports than "
                       f"{LOCAL_API_URL}, with the local credentials)")  # fmt: skip
    p.add_argument("--region", help="the stack's region (default: your AWS configuration's)")
    p.add_argument("--bucket", help="the images bucket (default: the stack's BucketName output)")
    p.add_argument("--table", help="the embeddings table (default: the stack's TableName output)")
    p.add_argument("--endpoint-url", help=f"S3 and DynamoDB endpoint (the local stack: {LOCAL_ENDPOINT})")
    p.add_argument("--upload", choices=["auto", "direct", "server"], default="auto",
                   help="direct: the browser PUTs to presigned URLs (the bucket needs a CORS rule); server: "
                   "through this server; auto: direct where the bucket's CORS admits it")  # fmt: skip
    p.add_argument("--unsigned", action="store_true", help="do not sign API requests (an API with ApiAuth=NONE)")
    p.add_argument("--access-log", action="store_true", help="print every request the gallery serves")
    return p


def resolve(args: argparse.Namespace, session: Any = None) -> Target:
    from dataclasses import replace

    from infra.ui import target as targets

    is_local = args.stack is None and (args.api is None or urlsplit(args.api).hostname in LOOPBACK)
    if is_local:
        t = targets.local_target(args.api or LOCAL_API_URL, args.endpoint_url or LOCAL_ENDPOINT, args.bucket,
                                 args.table)  # fmt: skip
    else:
        if session is None:
            import boto3

            session = boto3.session.Session(region_name=args.region)
        t = targets.stack_target(args.stack, session) if args.stack else targets.api_target(args.api, session)
        t = replace(t, bucket=args.bucket or t.bucket, table=args.table or t.table, endpoint_url=args.endpoint_url)
    return replace(t, signed=not args.unsigned)


def main(argv: list[str] | None = None, *, session: Any = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    try:
        target = resolve(args, session)
    except TargetError as exc:
        say(f"error: {exc}")
        return 2
    from infra.ui.gallery import Gallery

    gallery = Gallery(target, port=DEFAULT_PORT if args.port is None else args.port, upload=args.upload,
                      access_log=say if args.access_log else None)  # fmt: skip
    try:
        gallery.start()
    except OSError as exc:
        if args.port is not None:
            say(f"error: cannot serve on 127.0.0.1:{args.port}: {exc}")
            return 2
        say(f"    (port {DEFAULT_PORT} is in use, using a free one)")
        gallery.port = 0
        gallery.start()
    say(f"==> gallery of {target.label}")
    say(f"    API {target.api_url} ({'SigV4-signed, execute-api' if target.signed else 'unsigned'})")
    say(f"    bucket {target.bucket or '(none: no thumbnails, no uploads)'}, table {target.table or '(none)'}")
    say(f"    uploads: {gallery.upload_why}")
    say(f"==> gallery: {gallery.url}")
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        gallery.stop()
        say("==> gallery stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
