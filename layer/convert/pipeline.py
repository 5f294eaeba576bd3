"""``clip-lambda build-model``: a checkpoint → its towers exported (fp32) → each tower int8, gated on every CPU
path, recovered if it misses the gate (``layer.convert.towers``) → the model directory (see the contract).

Only loading and exporting know which tower is which; from the export on, every tower goes through the
same steps.
"""

from __future__ import annotations

import base64
import json
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
from layer.convert.cpu_paths import CrossCpuMode
from layer.convert.gate import DEFAULT_MIN_COSINE
from layer.convert.labels import (
    DEFAULT_LABELS,
    DEFAULT_PROMPT,
    DEFAULT_TOP_K,
    GATE_PREFIX,
    prompts,
    read_labels,
    write_labels,
)
from layer.convert.quantize import QuantSettings
from layer.convert.towers import BuildContext, TowerJob, build_tower, fp32_spec
from layer.cpu import CpuInfo
from layer.embedder import pixel_values
from layer.limits import Limits
from layer.manifest import (
    FP32_FILE,
    IMAGE,
    INPUT_NAME,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    PREPROCESSOR_FILE,
    TEXT,
    TEXT_FP32_FILE,
    TEXT_INPUT_NAME,
    TEXT_MODEL_FILE,
    TEXT_OUTPUT_NAME,
    TOKENIZER_FILE,
    Manifest,
    TagSpec,
    TokenLayout,
    TowerSpec,
    sha256_file,
)
from layer.settings import BUILD_DIR, DEFAULT_SOURCE, EngineSettings

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
    recover: bool = True  # below the gate: find the cheapest int8 mix that meets it (False: refuse, exit 4)
    cross_cpu: CrossCpuMode = "auto"
    text: bool = True  # also the text tower (False: an image-only build, ``--no-text``)
    text_quant: QuantSettings | None = None  # None: the vision tower's format + the token embedding (text_quant)
    labels: Path | None = DEFAULT_LABELS  # the zero-shot tags' vocabulary (None: no tags; needs the text tower)
    tags_top_k: int = DEFAULT_TOP_K


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


def image_job(folder: Path, config: PreprocessConfig, dim: int, quant: QuantSettings, seed: int) -> TowerJob:
    """The vision tower: the gate's images preprocessed once on the exact path, the PNG canary."""
    from layer.convert.calibration import calibration_images, canary_image

    images = [
        (name, pixel_values(data, config, Limits(), fast_jpeg=False)[0]) for name, data in calibration_images(seed)
    ]
    canary = canary_image()
    inputs = np.stack([p for _, p in images])
    spec = TowerSpec(
        name=IMAGE,
        file=MODEL_FILE,
        fp32_file=FP32_FILE,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        dim=dim,
        input={"dtype": "float32", "shape": ["N", 3, config.crop_size, config.crop_size],
               "layout": "CLIPImageProcessor output (preprocessor_config.json); one image per run"},
        preprocessor=PREPROCESSOR_FILE,
    )  # fmt: skip
    return TowerJob(
        spec=spec,
        inputs=inputs,
        names=[n for n, _ in images],
        canary_input=pixel_values(canary, config, Limits(), fast_jpeg=True)[0],
        canary_record={"png_base64": base64.b64encode(canary).decode("ascii")},
        quant=quant,
        calibration=list(inputs) if quant.method == "static" else [],
    )


def text_job(folder: Path, export: Any, quant: QuantSettings, label_prompts: list[str] | None = None) -> TowerJob:
    """The text tower: the gate's texts (and the tags' label prompts: every one gated like any other text)
    and the canary text, tokenized by the engine's tokenizer."""
    from layer.convert.calibration import CANARY_TEXT, calibration_texts
    from layer.convert.tokenizer import encode

    layout = TokenLayout(
        file=TOKENIZER_FILE,
        context_length=export.context_length,
        bos_id=export.bos_id,
        eos_id=export.eos_id,
        pad_id=export.eos_id,
        source=export.tokenizer_source,
    )
    texts = calibration_texts() + [(f"{GATE_PREFIX}{p}", p) for p in label_prompts or []]
    ids = encode(folder / TOKENIZER_FILE, [t for _, t in texts], layout)
    n = export.context_length
    spec = TowerSpec(
        name=TEXT,
        file=TEXT_MODEL_FILE,
        fp32_file=TEXT_FP32_FILE,
        input_name=TEXT_INPUT_NAME,
        output_name=TEXT_OUTPUT_NAME,
        dim=export.dim,
        input={"dtype": "int64", "shape": ["N", n],
               "layout": f"bos_id, the text's tokens, eos_id, then pad_id up to {n} (longer texts: their first "
               f"{n - 2} tokens); no attention mask (causal tower, pooled at the first eos_id); one text per run"},
        tokens=layout,
    )  # fmt: skip
    return TowerJob(
        spec=spec,
        inputs=ids,
        names=[name for name, _ in texts],
        canary_input=encode(folder / TOKENIZER_FILE, [CANARY_TEXT], layout)[0],
        canary_record={"text": CANARY_TEXT},
        quant=quant,
        calibration=list(ids) if quant.method == "static" else [],
    )


def embed_labels(folder: Path, spec: TowerSpec, labels: list[str], opts: BuildOptions, log: Log) -> TagSpec:
    """The label prompts' vectors from the fp32 text tower (the reference the int8 tower's gate compared its
    own vectors with, prompt by prompt), written beside the towers."""
    from layer.convert.tokenizer import encode
    from layer.tower import TowerSession

    if spec.tokens is None:  # the text tower always has its token layout; the type says it may not
        raise ValueError(f"the {spec.name} tower has no token layout to embed the labels with")
    ids = encode(folder / TOKENIZER_FILE, prompts(labels), spec.tokens)
    session = TowerSession.load(folder, spec, precision="fp32", cpu=CpuInfo.detect(), engine=EngineSettings())
    vectors = session.embed(ids)[0]
    source = "default" if opts.labels == DEFAULT_LABELS else str(opts.labels)
    log(f"    tags: {len(labels)} labels ({source}), top {opts.tags_top_k} per image")
    return write_labels(folder, labels, vectors, prompt=DEFAULT_PROMPT, source=source, top_k=opts.tags_top_k)


def build_model(opts: BuildOptions, log: Log = _stderr) -> Manifest:
    """Build into a temporary sibling directory and rename it into place, so a failed build (gate
    included) never leaves a half-written model directory where a previous good one was."""
    # Heavy imports here so `clip-lambda --help` stays fast.
    import torch
    import transformers

    from layer.convert.export import OPSET, export_onnx
    from layer.convert.source import load_source
    from layer.convert.text_tower import export_text, text_quant

    out = Path(opts.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    int8 = opts.precision == "int8"
    tagged = opts.text and opts.labels is not None and opts.precision == "int8"
    steps = _Steps(4 + (2 if opts.text else 0) + (1 if tagged else 0), log)
    started = datetime.now(UTC)
    native = CpuInfo.detect()
    try:
        with steps.step(f"load {opts.source}"):
            loaded = load_source(opts.source, revision=opts.revision, seed=opts.seed)
        if loaded.source == "random-init":
            log("WARNING: random-init weights: an untrained model, for offline development only")
        config = PreprocessConfig.from_dict(loaded.preprocessor) if loaded.preprocessor else PreprocessConfig()
        (tmp / PREPROCESSOR_FILE).write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
        texported = None
        if opts.text:  # first: a checkpoint without a text tower fails before anything is exported
            with steps.step("text tower: tokenizer.json + export ONNX (fp32)"):
                texported = export_text(opts.source, tmp, revision=opts.revision, seed=opts.seed)
        with steps.step(f"image tower: export ONNX (fp32, {config.crop_size} px)"):
            export_onnx(loaded.model, tmp / FP32_FILE, image_size=config.crop_size)
        model_id, source_kind, revision = loaded.model_id, loaded.source, loaded.revision
        dim = int(loaded.model.config.projection_dim)  # 512 for ViT-B/32 and B/16, 768 for L/14
        del loaded  # free the torch weights before quantizing
        if texported is not None and texported.dim != dim:
            raise ValueError(f"the text tower's dimension {texported.dim} is not the image tower's {dim}")
        jobs = [image_job(tmp, config, dim, opts.quant, opts.seed)]
        labels = read_labels(opts.labels) if tagged and opts.labels is not None else []
        if texported is not None:
            jobs.append(text_job(tmp, texported, opts.text_quant or text_quant(opts.quant), prompts(labels)))
        towers: dict[str, TowerSpec] = {}
        for job in jobs:
            what = "int8, accuracy gate on every CPU path" + (", recovery if needed" if opts.recover else "")
            with steps.step(f"{job.spec.name} tower: {what if int8 else 'fp32'} (min cosine ≥ {opts.min_cosine})"):
                if not int8:
                    towers[job.spec.name] = fp32_spec(tmp, job, log)
                    continue
                ctx = BuildContext(
                    folder=tmp,
                    model_id=model_id,
                    dim=dim,
                    min_cosine=opts.min_cosine,
                    recover=opts.recover,
                    cross_cpu=opts.cross_cpu,
                    native=native,
                    log=log,
                    done=dict(towers),
                )
                towers[job.spec.name] = build_tower(job, ctx)
        tags = None
        if labels and TEXT in towers:
            with steps.step(f"tags: {len(labels)} labels embedded by the fp32 text tower"):
                tags = embed_labels(tmp, towers[TEXT], labels, opts, log)
        with steps.step("write manifest"):
            manifest = Manifest(
                model_id=model_id,
                dim=dim,
                towers=towers,
                source={"kind": source_kind, "name": opts.source, "revision": revision, "seed": opts.seed},
                random_init=source_kind == "random-init",
                tags=tags,
                precision=opts.precision,
                opset=OPSET,
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
            )
            manifest.write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"model directory ready: {out} ({manifest.model_id}, {opts.precision}, {dim}-d)")
    return manifest
