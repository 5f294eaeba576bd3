"""``clip-lambda build-model``: checkpoint → ONNX → int8 → gate → model directory (see the contract), for the
vision tower and, unless ``--no-text``, the text tower (``layer.convert.text_tower``) beside it."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime

from layer.config import PreprocessConfig
from layer.convert.cpu_paths import TEXT, CrossCpuMode, PathResult, native_result, pick_images, run_cpu_paths
from layer.convert.gate import DEFAULT_MIN_COSINE, GateFailed, gate_vectors, judge
from layer.convert.quantize import QuantSettings, optimize_offline, quantize
from layer.cpu import CpuInfo, describe
from layer.embedder import Embedder, pixel_values
from layer.limits import Limits
from layer.manifest import (
    FP32_FILE,
    INPUT_NAME,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    PREPROCESSOR_FILE,
    TEXT_FP32_FILE,
    TEXT_MODEL_FILE,
    TOKENIZER_FILE,
    Manifest,
    sha256_file,
)
from layer.settings import BUILD_DIR, DEFAULT_SOURCE

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class BuildOptions:
    source: str = DEFAULT_SOURCE
    out: Path = BUILD_DIR
    precision: Literal["int8", "fp32"] = "int8"
    revision: str | None = None
    seed: int = 0
    quant: QuantSettings = field(default_factory=QuantSettings)
    min_cosine: float = DEFAULT_MIN_COSINE
    cross_cpu: CrossCpuMode = "auto"
    text: bool = True  # also the text tower (False: an image-only build, ``--no-text``)
    text_quant: QuantSettings | None = None  # None: the vision tower's format + the token embedding (text_quant)


class _Steps:
    def __init__(self, total: int, log: Log) -> None:
        self.total, self.n, self.log = total, 0, log
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.n += 1
        self.log(f"[{self.n}/{self.total}] {name} ...")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 2)
        self.log(f"[{self.n}/{self.total}] {name}: done in {dt:.1f}s")


def _link(src: Path, dst: Path) -> None:
    """An fp32 build ships its fp32 export under the int8 name too (one file on disk)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_model(opts: BuildOptions, log: Log = _stderr) -> Manifest:
    """Build into a temporary sibling directory and rename it into place, so a failed build (gate
    included) never leaves a half-written model directory where a previous good one was."""
    # Heavy imports here so `clip-lambda --help` stays fast.
    import torch
    import transformers

    from layer.convert.calibration import calibration_images, calibration_texts
    from layer.convert.export import OPSET, export_onnx
    from layer.convert.source import load_source
    from layer.convert.text_tower import export_text, gate_text, quantize_text, text_quant, text_section
    from layer.convert.tokenizer import encode

    out = Path(opts.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    int8 = opts.precision == "int8"
    steps = _Steps((6 if int8 else 4) + ((4 if int8 else 1) if opts.text else 0), log)
    started = datetime.now(UTC)
    native = CpuInfo.detect()
    tquant = opts.text_quant or text_quant(opts.quant)
    text: dict[str, Any] | None = None
    try:
        with steps.step(f"load {opts.source}"):
            loaded = load_source(opts.source, revision=opts.revision, seed=opts.seed)
        if loaded.source == "random-init":
            log("WARNING: random-init weights: an untrained model, for offline development only")
        config = PreprocessConfig.from_dict(loaded.preprocessor) if loaded.preprocessor else PreprocessConfig()
        (tmp / PREPROCESSOR_FILE).write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
        if opts.text:  # first: a checkpoint without a text tower fails before anything is exported
            with steps.step("text tower: tokenizer.json + export ONNX (fp32)"):
                texported = export_text(opts.source, tmp, revision=opts.revision, seed=opts.seed)
            texts = calibration_texts()
            text_names = [name for name, _ in texts]
            ids = encode(tmp / TOKENIZER_FILE, [t for _, t in texts])
        with steps.step("export ONNX (fp32)"):
            export_onnx(loaded.model, tmp / FP32_FILE, image_size=config.crop_size)
        model_id, source_kind, revision = loaded.model_id, loaded.source, loaded.revision
        dim = int(loaded.model.config.projection_dim)  # 512 for ViT-B/32 and B/16, 768 for L/14
        del loaded  # free the torch weights before quantizing
        gate: dict[str, Any] = {"applicable": False, "reason": "fp32 build ships the reference export"}
        cpu_paths: list[PathResult] = []
        text_paths: list[PathResult] = []
        if int8:
            # Preprocessed once (exact path): the static quantizer's calibration and the gate share them.
            images = [
                (name, pixel_values(data, config, Limits(), fast_jpeg=False)[0])
                for name, data in calibration_images(opts.seed)
            ]
            with steps.step(f"quantize int8 ({opts.quant.method}, {'+'.join(opts.quant.op_types)})"):
                calib = [pixels for _, pixels in images] if opts.quant.method == "static" else []
                quantize(tmp / FP32_FILE, tmp / MODEL_FILE, opts.quant, calib)
                optimize_offline(tmp / MODEL_FILE)
            if opts.text:
                with steps.step(f"quantize the text tower int8 ({tquant.method}, {'+'.join(tquant.op_types)})"):
                    quantize_text(tmp, tquant, ids)
                text = text_section(texported, precision="int8", quant=tquant, gate={}, cpu_paths=[])
            # What the runtime reads before the session exists (its int8 tuning depends on it); the final
            # manifest replaces it below.
            provisional = Manifest(model_id=model_id, precision="int8", quantization=opts.quant.to_dict(), text=text)
            provisional.write(tmp)
            names = [name for name, _ in images]
            with steps.step(f"accuracy gate on {len(images)} images (min cosine ≥ {opts.min_cosine})"):
                # Sessions exactly as the runtime makes them on this CPU (Embedder.from_dir: tuned threads,
                # graph level and the int8 options of layer.cpu).
                int8_vecs, fp32_vecs = gate_vectors(
                    Embedder.from_dir(tmp), Embedder.from_dir(tmp, precision="fp32"), images
                )
                result = judge(names, int8_vecs, fp32_vecs, opts.min_cosine)
                log(f"    {describe(native)}")
                log(f"    cosine min {result.cosine_min:.6f} ({result.worst}), mean {result.cosine_mean:.6f}")
                gate = {"applicable": True, **result.to_dict()}
                if not result.passed:
                    raise GateFailed(result)
            if opts.text:
                with steps.step(f"text accuracy gate on {len(texts)} texts (min cosine ≥ {opts.min_cosine})"):
                    tgate, provisional = gate_text(
                        tmp,
                        provisional,
                        texported,
                        quant=tquant,
                        names=text_names,
                        ids=ids,
                        min_cosine=opts.min_cosine,
                        log=log,
                    )
            picked = pick_images(names, [result.per_image[n] for n in names])
            step = f"accuracy gate on the other CPU paths ({len(picked)} images each, --cross-cpu {opts.cross_cpu})"
            with steps.step(step):
                cpu_paths = run_cpu_paths(
                    tmp,
                    provisional,
                    inputs=np.stack([images[i][1] for i in picked]),
                    native_int8=int8_vecs[picked],
                    fp32=fp32_vecs[picked],
                    native_summary=native_result(native, list(result.per_image.values())),
                    native=native,
                    mode=opts.cross_cpu,
                    min_cosine=opts.min_cosine,
                    log=log,
                )
            if opts.text:
                per_text = [tgate.result.per_image[n] for n in text_names]
                tpicked = pick_images(text_names, per_text)
                step = f"text gate on the other CPU paths ({len(tpicked)} texts each, --cross-cpu {opts.cross_cpu})"
                with steps.step(step):
                    text_paths = run_cpu_paths(
                        tmp,
                        provisional,
                        inputs=ids[tpicked],
                        native_int8=tgate.int8[tpicked],
                        fp32=tgate.fp32[tpicked],
                        native_summary=native_result(native, per_text, TEXT),
                        native=native,
                        mode=opts.cross_cpu,
                        min_cosine=opts.min_cosine,
                        log=log,
                        tower=TEXT,
                    )
                text = text_section(
                    texported,
                    precision="int8",
                    quant=tgate.quant,
                    gate=tgate.to_dict(),
                    cpu_paths=[r.to_dict() for r in text_paths],
                )
        else:
            _link(tmp / FP32_FILE, tmp / MODEL_FILE)
            if opts.text:
                _link(tmp / TEXT_FP32_FILE, tmp / TEXT_MODEL_FILE)
                text = text_section(texported, precision="fp32", quant=None, gate=dict(gate), cpu_paths=[])
        with steps.step("write manifest"):
            manifest = Manifest(
                model_id=model_id,
                source={"kind": source_kind, "name": opts.source, "revision": revision, "seed": opts.seed},
                random_init=source_kind == "random-init",
                precision=opts.precision,
                dim=dim,
                input={"name": INPUT_NAME, "dtype": "float32", "shape": ["N", 3, config.crop_size, config.crop_size]},
                output={"name": OUTPUT_NAME, "shape": ["N", dim], "normalized": False},
                opset=OPSET,
                quantization=opts.quant.to_dict() if int8 else None,
                # model.onnx is saved after ORT's "extended" graph optimizations (CPU provider, this
                # onnxruntime version); model.fp32.onnx is the plain, portable export.
                graph_optimization="extended (offline)" if int8 else "none",
                accuracy_gate=gate,
                # The int8 model on each CPU path Lambda may run: native, emulated (QEMU) or not run, why.
                cpu_paths=[r.to_dict() for r in cpu_paths],
                built_on=native.to_dict(),
                versions={
                    "onnxruntime": onnxruntime.__version__,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "python": platform.python_version(),
                },
                built_at=started.isoformat(timespec="seconds").replace("+00:00", "Z"),
                build_seconds=steps.timings,
                files={
                    p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                    for p in sorted(tmp.iterdir())
                    if p.is_file() and p.name != MANIFEST_FILE  # the provisional one is replaced below
                },
                text=text,
            )
            manifest.write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"model directory ready: {out} ({manifest.model_id}, {opts.precision})")
    return manifest
