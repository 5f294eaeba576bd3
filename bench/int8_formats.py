"""Which int8 format: accuracy, speed and cross-CPU agreement of each candidate, measured in one run.

    python -m bench.int8_formats --model build/model [--variants s8,s8-portable,u8,s7-portable] [--no-emulation]

Each variant is quantized from the model directory's ``model.fp32.onnx`` with the build's own tools
(``layer.convert.quantize``), then run the way the runtime runs it on this CPU (``Embedder.from_dir``: the
session options ``layer.cpu`` picks from the variant's quantization settings):

- accuracy: cosine to fp32 on the build gate's 17 images (min, mean);
- speed: model-only milliseconds per image on 1 thread, the variants interleaved (median of ``--repeats``),
  and the session creation time (what INIT pays);
- agreement: the same images' vectors on the emulated CPU paths (``layer.convert.cpu_paths``) against this
  machine's, min cosine and whether bit-identical.

Writes ``bench/results/<cpu kind>/int8_formats.{json,md}``. Emulated timings are QEMU's, not the CPU's: only
the native column is a speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine, results_dir
from layer.manifest import Manifest

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "s8": ("signed 8-bit weights, fused Softmax (the format before the portable one)", {"portable_softmax": False}),
    "s8-portable": ("signed 8-bit weights, decomposed Softmax (shipped)", {}),
    "u8": ("unsigned 8-bit weights, decomposed Softmax", {"weight_type": "uint8"}),
    "s7-portable": ("signed 7-bit weights (reduce_range), decomposed Softmax", {"reduce_range": True}),
}
EMULATED = ("x86-avx2", "arm64-dotprod")


@dataclass
class Variant:
    name: str
    description: str
    directory: Path


def build_variants(model: Path, names: list[str], workdir: Path) -> list[Variant]:
    import dataclasses

    from layer.convert.quantize import QuantSettings, quantize
    from layer.manifest import FP32_FILE, MODEL_FILE, PREPROCESSOR_FILE

    out = []
    for name in names:
        description, changes = VARIANTS[name]
        settings = QuantSettings(**changes)
        directory = workdir / name
        directory.mkdir(parents=True)
        shutil.copy2(model / PREPROCESSOR_FILE, directory / PREPROCESSOR_FILE)
        (directory / FP32_FILE).symlink_to((model / FP32_FILE).resolve())
        print(f"int8_formats: quantizing {name} ...", file=sys.stderr, flush=True)
        quantize(model / FP32_FILE, directory / MODEL_FILE, settings)  # saved pre-optimized, as the build does
        source = Manifest.read(model)
        image = dataclasses.replace(source.image, precision="int8", quantization=settings.to_dict(), canary=None)
        Manifest(model_id=f"variant/{name}", dim=source.dim, towers={image.name: image}).write(directory)
        out.append(Variant(name, description, directory))
    return out


def gate_pixels() -> tuple[list[str], np.ndarray]:
    from layer.config import PreprocessConfig
    from layer.convert.calibration import calibration_images
    from layer.embedder import pixel_values
    from layer.limits import Limits

    images = calibration_images(0)
    pixels = [pixel_values(data, PreprocessConfig(), Limits(), fast_jpeg=False)[0] for _, data in images]
    return [name for name, _ in images], np.stack(pixels)


def measure(variants: list[Variant], fp32_dir: Path, repeats: int, emulation: bool) -> dict[str, Any]:
    from layer import Embedder
    from layer.convert.cpu_paths import PATHS, emulate, pick_images
    from layer.convert.emulation import EmulationUnavailable

    names, pixels = gate_pixels()
    fp32 = Embedder.from_dir(fp32_dir, precision="fp32", threads=1).embed_pixels(pixels)[0].astype(np.float64)
    engines, results = {}, {}
    for v in variants:
        created = []
        for _ in range(3):
            t0 = time.perf_counter()
            engines[v.name] = Embedder.from_dir(v.directory, threads=1)
            created.append((time.perf_counter() - t0) * 1e3)
        vectors = engines[v.name].embed_pixels(pixels)[0].astype(np.float64)
        cos = np.sum(vectors * fp32, axis=1)
        results[v.name] = {
            "description": v.description,
            "session_config": dict(engines[v.name].session_settings.config),
            "cosine_to_fp32_min": round(float(cos.min()), 6),
            "cosine_to_fp32_mean": round(float(cos.mean()), 6),
            "session_create_ms": round(statistics.median(created), 1),
            "vectors": vectors,
            "cosines": cos,
        }
    one = pixels[:1]
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for _ in range(repeats):  # interleaved, so that machine noise hits every variant alike
        for v in variants:
            t0 = time.perf_counter()
            engines[v.name].run_model(one)
            times[v.name].append((time.perf_counter() - t0) * 1e3)
    picked = pick_images(names, list(results[variants[0].name]["cosines"]))
    by_name = {p.name: p for p in PATHS}
    for v in variants:
        r = results[v.name]
        r["model_only_ms_p50"] = round(statistics.median(times[v.name]), 2)
        r["emulated"] = {}
        for path_name in EMULATED if emulation else ():
            manifest = Manifest.read(v.directory)
            try:
                vecs, _ = emulate(by_name[path_name], v.directory, manifest, "image", pixels[picked])
            except EmulationUnavailable as exc:
                r["emulated"][path_name] = {"not_run": str(exc)}
                continue
            native = r["vectors"][picked]
            agree = np.sum(vecs.astype(np.float64) * native, axis=1)
            to_fp32 = np.sum(vecs.astype(np.float64) * fp32[picked], axis=1)
            r["emulated"][path_name] = {
                "agreement_min": round(float(agree.min()), 7),
                "bit_identical": bool(np.array_equal(vecs, native.astype(np.float32))),
                "cosine_to_fp32_min": round(float(to_fp32.min()), 6),
            }
            print(f"int8_formats: {v.name} on {path_name}: {r['emulated'][path_name]}", file=sys.stderr, flush=True)
    fp32_engine = Embedder.from_dir(fp32_dir, precision="fp32", threads=1)
    fp32_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fp32_engine.run_model(one)
        fp32_times.append((time.perf_counter() - t0) * 1e3)
    for r in results.values():
        del r["vectors"], r["cosines"]
    return {
        "machine": machine(),
        "images": len(names),
        "emulated_images": len(picked),
        "repeats": repeats,
        "fp32_model_only_ms_p50": round(statistics.median(fp32_times), 2),
        "variants": results,
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    fp32 = result["fp32_model_only_ms_p50"]
    head = " | ".join(f"{p}: agreement (bit-identical)" for p in EMULATED)
    lines = [
        f"Machine: {m['summary']}, onnxruntime {m['onnxruntime']}. Model-only ms per image on 1 thread (median of "
        f"{result['repeats']}, variants interleaved); fp32 {fp32:.1f} ms. Cosine to fp32 on {result['images']} "
        f"gate images; agreement with this machine's vectors on {result['emulated_images']} images per emulated "
        "CPU.",
        "",
        f"| variant | session options here | cos to fp32 min / mean | ms / image | × fp32 | session ms | {head} |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(EMULATED),
    ]
    for name, r in result["variants"].items():
        cells = []
        for p in EMULATED:
            e = r["emulated"].get(p, {"not_run": "--no-emulation"})
            if "not_run" in e:
                cells.append("not run")
            else:
                cells.append(f"{e['agreement_min']:.7f}" + (" (yes)" if e["bit_identical"] else ""))
        opts = ", ".join(f"{k}={v}" for k, v in r["session_config"].items()) or "none"
        lines.append(
            f"| {name}: {r['description']} | {opts} | {r['cosine_to_fp32_min']:.6f} / {r['cosine_to_fp32_mean']:.6f} "
            f"| {r['model_only_ms_p50']:.1f} | {fp32 / r['model_only_ms_p50']:.2f}× | {r['session_create_ms']:.0f} "
            f"| {' | '.join(cells)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model directory (its model.fp32.onnx is used)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--no-emulation", action="store_true", help="skip the emulated CPU paths")
    p.add_argument("--out", type=Path, default=results_dir() / "int8_formats.json")
    args = p.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="clip-int8-formats-") as tmp:
        variants = build_variants(args.model, names, Path(tmp))
        result = measure(variants, args.model, args.repeats, emulation=not args.no_emulation)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
