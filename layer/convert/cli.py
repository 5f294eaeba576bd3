"""``clip-lambda build-model`` (also ``python -m layer.convert``): a checkpoint → the gated int8 model directory
(the vision tower, and the text tower unless ``--no-text``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from layer.settings import DEFAULT_SOURCE


def _build_model(args: argparse.Namespace) -> int:
    from layer.convert.bpe_vocab import VocabUnavailable
    from layer.convert.cpu_paths import CpuPathsFailed
    from layer.convert.emulation import EmulationUnavailable
    from layer.convert.gate import GateFailed
    from layer.convert.labels import DEFAULT_LABELS, LabelsError, read_labels
    from layer.convert.pipeline import BuildOptions, build_model
    from layer.convert.quantize import QuantSettings
    from layer.convert.source import NoTextTower, SourceUnavailable
    from layer.convert.text_tower import text_quant

    quant = QuantSettings(
        method=args.quant_method,
        op_types=tuple(args.quant_op_types.split(",")),
        per_channel=not args.per_tensor,
        reduce_range=args.weight_bits == 7,
        nodes_to_exclude=tuple(n for n in args.quant_exclude_nodes.split(",") if n),
    )
    labels = None if args.labels == "none" else Path(args.labels) if args.labels else DEFAULT_LABELS
    if labels is not None:
        try:
            read_labels(labels)  # refused before the long build
        except LabelsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    opts = BuildOptions(
        labels=labels,
        tags_top_k=args.tags_top_k,
        source=args.source,
        out=Path(args.out),
        precision=args.precision,
        revision=args.revision,
        seed=args.seed,
        quant=quant,
        min_cosine=args.min_cosine,
        recover=not args.no_recover,
        cross_cpu=args.cross_cpu,
        text=not args.no_text,
        text_quant=text_quant(
            quant,
            method=args.text_quant_method,
            op_types=tuple(args.text_quant_op_types.split(",")),
            nodes_to_exclude=tuple(n for n in args.text_quant_exclude_nodes.split(",") if n),
        ),
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
    except (SourceUnavailable, NoTextTower, VocabUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (GateFailed, CpuPathsFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except EmulationUnavailable as exc:
        print(f"error: --cross-cpu required, but a CPU path cannot be emulated here: {exc}", file=sys.stderr)
        return 5
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build-model", help="build the gated int8 ONNX model directory")
    b.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="hub id, local save_pretrained dir (CLIPModel, or CLIPVisionModelWithProjection with --no-text), "
        "or 'random-init' (untrained, offline)",
    )
    b.add_argument(
        "--no-text",
        action="store_true",
        help="image-only: leave out the text tower (text_model.onnx, text_model.fp32.onnx, tokenizer.json)",
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
    b.add_argument(
        "--min-cosine",
        type=float,
        default=0.999,
        help="the accuracy gate: every gate input's int8 vector at this cosine or more to its fp32 vector, on "
        "every CPU path the build checks",
    )
    b.add_argument(
        "--no-recover",
        action="store_true",
        help="refuse (exit 4) when a tower misses the gate, instead of finding the cheapest int8 mix that meets "
        "it (SmoothQuant-style migration into the LayerNorms, then the fewest MatMuls kept in fp32)",
    )
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
    b.add_argument("--text-quant-method", choices=["dynamic", "static"], default="dynamic")
    b.add_argument(
        "--text-quant-op-types",
        default="MatMul,Gather",
        help="the text tower's op types to quantize (the weight format follows the vision tower's options); "
        "Gather is the 49,408-token embedding, as int8 rows (the recovery may keep it fp32)",
    )
    b.add_argument("--text-quant-exclude-nodes", default="", help="text tower ONNX node names to keep in fp32")
    b.add_argument(
        "--labels",
        help="the zero-shot tags' vocabulary: a file of one label per line (default: the packaged list of a few "
        "hundred everyday labels, layer/convert/labels.txt); 'none': no tags. Embedded by the text tower as "
        "'a photo of a {label}.', every prompt in the text tower's gate",
    )
    b.add_argument("--tags-top-k", type=int, default=5, help="tags per image (default 5)")
    b.set_defaults(func=_build_model)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m layer.convert", description=__doc__)
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
