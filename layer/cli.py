"""``clip-lambda``: build-model, embed, bench, local.

Subcommands import their heavy dependencies lazily: ``embed`` never loads torch, and ``local`` (the AWS
stack from ``infra/``) is the only one that imports boto3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _build_model(args: argparse.Namespace) -> int:
    from layer.build.cpu_paths import CpuPathsFailed
    from layer.build.emulation import EmulationUnavailable
    from layer.build.gate import GateFailed
    from layer.build.pipeline import BuildOptions, build_model
    from layer.build.quantize import QuantSettings
    from layer.build.source import SourceUnavailable

    quant = QuantSettings(
        method=args.quant_method,
        op_types=tuple(args.quant_op_types.split(",")),
        per_channel=not args.per_tensor,
        reduce_range=args.weight_bits == 7,
        nodes_to_exclude=tuple(n for n in args.quant_exclude_nodes.split(",") if n),
    )
    opts = BuildOptions(
        source=args.source,
        out=Path(args.out),
        precision=args.precision,
        revision=args.revision,
        seed=args.seed,
        quant=quant,
        min_cosine=args.min_cosine,
        cross_cpu=args.cross_cpu,
    )
    try:
        try:
            build_model(opts)
        except SourceUnavailable as exc:
            if not args.fallback_source:
                raise
            banner = "!" * 100
            print(
                f"{banner}\n!!! {exc}\n!!! FALLING BACK TO --source {args.fallback_source}: "
                f"AN UNTRAINED MODEL, its vectors carry no meaning (model id says so)\n{banner}",
                file=sys.stderr,
            )
            opts.source = args.fallback_source
            build_model(opts)
    except SourceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (GateFailed, CpuPathsFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except EmulationUnavailable as exc:
        print(f"error: --cross-cpu required, but a CPU path cannot be emulated here: {exc}", file=sys.stderr)
        return 5
    return 0


def _embed(args: argparse.Namespace) -> int:
    from layer.embedder import Embedder
    from layer.errors import ImageError

    embedder = Embedder.from_dir(args.model, precision=args.precision, threads=args.threads, fast_jpeg=not args.exact)
    failed = 0
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


def _bench(args: argparse.Namespace) -> int:
    from bench.run import main as bench_main

    return bench_main(args.bench_args)


def _local(args: argparse.Namespace) -> int:
    from infra.local import main as local_main

    return local_main(args.local_args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clip-lambda", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build-model", help="build the gated int8 ONNX model directory")
    b.add_argument(
        "--source",
        default="openai/clip-vit-base-patch32",
        help="hub id, local save_pretrained dir (CLIPModel or CLIPVisionModelWithProjection), "
        "or 'random-init' (untrained, offline)",
    )
    b.add_argument("--out", required=True, help="model directory to write")
    b.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    b.add_argument(
        "--fallback-source",
        default=None,
        help="source to build instead when SRC cannot be loaded (e.g. random-init when offline); loudly labelled",
    )
    b.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    b.add_argument("--seed", type=int, default=0, help="seed for random-init and synthetic gate images")
    b.add_argument("--min-cosine", type=float, default=0.999, help="accuracy gate threshold (int8 vs fp32)")
    b.add_argument(
        "--cross-cpu",
        choices=["auto", "required", "off"],
        default="auto",
        help="also gate the int8 model on the CPU paths this machine lacks, emulated with QEMU "
        "(x86 AVX2, arm64 Graviton2/3-like): auto = those this machine can emulate (the others are "
        "recorded as not run, with the reason), required = fail (exit 5) if one cannot run; "
        "needs qemu-user-static, and for arm64 debootstrap and root",
    )
    b.add_argument(
        "--weight-bits",
        type=int,
        choices=[8, 7],
        default=8,
        help="8 (default): best accuracy; 7: weights cannot saturate on x86 without VNNI, so those CPUs need "
        "no u8 re-encoding at load (faster there), at lower accuracy",
    )
    b.add_argument("--quant-method", choices=["dynamic", "static"], default="dynamic")
    b.add_argument("--quant-op-types", default="MatMul", help="comma-separated ONNX op types to quantize")
    b.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    b.add_argument(
        "--quant-exclude-nodes",
        default="",
        help="comma-separated ONNX node names to keep in fp32 (e.g. MatMuls with outlier activations)",
    )
    b.set_defaults(func=_build_model)

    e = sub.add_parser("embed", help="embed images; one JSON object per line")
    e.add_argument("--model", required=True, help="model directory")
    e.add_argument("--format", choices=["jsonl"], default="jsonl")
    e.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--exact", action="store_true", help="exact CLIPImageProcessor path for JPEGs (no DCT draft)")
    e.add_argument("images", nargs="+")
    e.set_defaults(func=_embed)

    r = sub.add_parser("bench", help="benchmark suite (bench/); see `clip-lambda bench --help`", add_help=False)
    r.add_argument("bench_args", nargs=argparse.REMAINDER)
    r.set_defaults(func=_bench)

    loc = sub.add_parser("local", help="run the local stack (moto + both functions under the RIE)", add_help=False)
    loc.add_argument("local_args", nargs=argparse.REMAINDER)
    loc.set_defaults(func=_local)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # bench and local own their options: pass everything after the subcommand through untouched.
    if argv and argv[0] == "bench":
        return _bench(argparse.Namespace(bench_args=argv[1:]))
    if argv and argv[0] == "local":
        return _local(argparse.Namespace(local_args=argv[1:]))
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
