"""``clip-lambda embed`` (also ``python -m layer``): images and texts (``--text``) → one JSON object per
line, with the engine only (onnxruntime, numpy, pillow, tokenizers: no torch, no AWS)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _embed(args: argparse.Namespace) -> int:
    from layer.embedder import Embedder
    from layer.errors import ImageError

    if not args.images and not args.text:
        print("error: give image files and/or --text", file=sys.stderr)
        return 2
    embedder = Embedder.from_dir(
        args.model, precision=args.precision, threads=args.threads, fast_jpeg=not args.exact, text=bool(args.text)
    )
    failed = _embed_texts(embedder, args.text) if args.text else 0
    for path in args.images:
        record: dict[str, object] = {"path": path}
        try:
            data = Path(path).read_bytes()
            e = embedder.embed_one(data)
            record |= {
                "embedding": [round(float(v), 7) for v in e.vector],
                "norm": round(e.norm, 6),
                "model": e.model,
                "width": e.width,
                "height": e.height,
            }
        except OSError as exc:
            failed += 1
            record["error"] = {"code": "unreadable_file", "message": f"{exc.strerror or exc}"}
        except ImageError as exc:
            failed += 1
            record["error"] = exc.to_dict()
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
    return 1 if failed else 0


def _embed_texts(embedder: Any, texts: list[str]) -> int:
    """One JSON line per text (``{"text", "embedding", "norm", "tokens", "truncated", "model"}``)."""
    from layer.errors import ModelDirError, TextError

    failed = 0
    for text in texts:
        record: dict[str, object] = {"text": text}
        try:
            t = embedder.embed_text(text)
            record |= {
                "embedding": [round(float(v), 7) for v in t.vector],
                "norm": round(t.norm, 6),
                "tokens": t.tokens,
                "truncated": t.truncated,
                "model": t.model,
            }
        except TextError as exc:
            failed += 1
            record["error"] = {"code": exc.code, "message": exc.message}
        except ModelDirError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return len(texts)
        sys.stdout.write(json.dumps(record) + "\n")
    return failed


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("embed", help="embed images and texts; one JSON object per line")
    e.add_argument("--model", required=True, help="model directory")
    e.add_argument("--format", choices=["jsonl"], default="jsonl", help="one JSON object per line (the contract)")
    e.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--exact", action="store_true", help="exact CLIPImageProcessor path for JPEGs (no DCT draft)")
    e.add_argument("--text", action="append", default=[], help="a text to embed (repeatable); needs a text tower")
    e.add_argument("images", nargs="*")
    e.set_defaults(func=_embed)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m layer", description=__doc__)
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
