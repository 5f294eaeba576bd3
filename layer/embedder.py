"""The engine: image bytes → L2-normalized CLIP image embeddings.

Images run through the model one at a time. Dynamic int8 quantization picks each activation's scale from
the whole input tensor, so inside a batch an image's vector would depend on its batch-mates (cosine 0.99987
measured); a run per image keeps every vector a function of its own pixels only, at almost no cost on CPU,
where a ViT-B/32 image is already ~4 GFLOP of GEMMs that saturate the cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from layer.config import PreprocessConfig
from layer.cpu import CpuInfo, SessionTuning, int8_tuning
from layer.decode import Decoded, decode
from layer.errors import ModelDirError
from layer.limits import Limits
from layer.manifest import (
    FP32_FILE,
    INPUT_NAME,
    MODEL_FILE,
    OUTPUT_NAME,
    PREPROCESSOR_FILE,
    Manifest,
)
from layer.preprocess import preprocess
from layer.session import SessionSettings, create_session
from layer.settings import EngineSettings
from layer.text import ClipTokenizer, TextEmbedding, TextEncoder

Precision = Literal["int8", "fp32"]
# The default JPEG path: DCT-domain downscale (1/2…1/8) that keeps the shortest side ≥ 1.5× the resize
# target (336 px), then the exact bicubic resize. A 12-MP photo decodes at 1/8 (500×375): 27 ms instead of
# 230 ms for decode + resize, at cosine ≥ 0.99999 to the exact path on the benchmark photos (the test
# requires ≥ 0.9995: tests/layer/test_fidelity.py).
FAST_JPEG_FACTOR = 1.5


@dataclass(frozen=True)
class Timings:
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray = field(repr=False)  # float32 [dim], unit L2 norm
    norm: float  # L2 norm before normalization: raw CLIP features = vector * norm
    width: int  # original size, after EXIF orientation
    height: int
    model: str
    format: str = "unknown"
    timings: Timings = field(default_factory=Timings, compare=False)

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


def l2_normalize(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(features.astype(np.float64), axis=-1, keepdims=True)
    unit = (features / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit, norms[..., 0].astype(np.float32)


def pixel_values(
    data: bytes, config: PreprocessConfig, limits: Limits, *, fast_jpeg: bool = True, exif: bool = True
) -> tuple[np.ndarray, Decoded, Timings]:
    """Decode + preprocess one image to float32 [3, H, W] (no model needed: the build's calibration and the
    benchmark's model-only tensors use it too). ``fast_jpeg=False`` is the exact CLIPImageProcessor path."""
    t0 = time.perf_counter()
    draft = int(config.shortest_edge * FAST_JPEG_FACTOR) if fast_jpeg else None
    decoded = decode(data, limits, draft_min_side=draft, exif=exif)
    t1 = time.perf_counter()
    pixels = preprocess(decoded.image, config)
    t2 = time.perf_counter()
    return pixels, decoded, Timings(decode_ms=(t1 - t0) * 1e3, preprocess_ms=(t2 - t1) * 1e3)


class Embedder:
    """Load once per process (Lambda INIT), then call ``embed_one`` per image.

    >>> emb = Embedder.from_dir("/opt/model")
    >>> emb.embed_one(jpeg_bytes).vector   # float32 [512], unit norm; ImageError (code, http_status) if bad
    """

    def __init__(
        self,
        model_path: str | Path,
        config: PreprocessConfig,
        *,
        model_id: str = "unknown",
        manifest: Manifest | None = None,
        limits: Limits | None = None,
        session_settings: SessionSettings | None = None,
        fast_jpeg: bool = True,
        exif: bool = True,
        cpu: CpuInfo | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.config = config
        self.model_id = model_id
        self.manifest = manifest or Manifest(model_id=model_id)
        self.limits = limits or Limits()
        self.session_settings = session_settings or SessionSettings.auto()
        self.fast_jpeg = fast_jpeg
        self.exif = exif
        self.cpu = cpu or CpuInfo.detect()
        self.session = create_session(self.model_path, self.session_settings)
        self.text: TextEncoder | None = None  # from_dir(..., text=True)
        out = self.session.get_outputs()[0]
        self.dim = int(out.shape[-1]) if isinstance(out.shape[-1], int) else self.manifest.dim

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        *,
        precision: Precision = "int8",
        threads: int | None = None,
        limits: Limits | None = None,
        fast_jpeg: bool = True,
        exif: bool = True,
        verify: bool = False,
        settings: EngineSettings | None = None,
        text: bool = False,
    ) -> Embedder:
        """``settings``: the environment's (``EngineSettings.from_env``) unless given; ``threads`` and
        ``limits`` override them. ``text``: also load the text tower if the model has one (the API's text
        and search routes need it; the S3 function does not, and skips its memory and its INIT time)."""
        settings = settings or EngineSettings.from_env()
        model_dir = Path(model_dir)
        manifest = Manifest.read(model_dir)
        if verify:
            manifest.verify_files(model_dir)
        model_file = model_dir / (MODEL_FILE if precision == "int8" else FP32_FILE)
        if not model_file.exists():
            raise ModelDirError(f"{model_file} not found")
        if precision == "int8" and manifest.precision == "fp32":
            precision = "fp32"  # an fp32-only build ships its fp32 export as model.onnx
        cpu = CpuInfo.detect()
        fp32 = SessionTuning(optimization="all")  # the plain export: every graph optimization at load
        tuning = int8_tuning(cpu, manifest.quantization) if precision == "int8" else fp32
        session_settings = SessionSettings.auto(
            settings, threads=threads, optimization=tuning.optimization, config=tuning.config
        )
        engine = cls(
            model_file,
            PreprocessConfig.from_file(model_dir / PREPROCESSOR_FILE),
            model_id=manifest.model_id + ("" if precision == "int8" else "@fp32"),
            manifest=manifest,
            limits=limits or settings.limits,
            session_settings=session_settings,
            cpu=cpu,
            fast_jpeg=fast_jpeg,
            exif=exif,
        )
        if text and manifest.text_tower is not None:
            engine.text = load_text_tower(
                model_dir,
                manifest,
                model_id=engine.model_id,
                precision=precision,
                cpu=cpu,
                image_settings=session_settings,
            )
        return engine

    def cpu_report(self) -> dict[str, Any]:
        """This CPU, its int8 kernel path, the session options chosen for it and whether the model's
        build gate ran on that path (INIT log, ``GET /model``)."""
        path = self.cpu.kernel_path
        gated = self.manifest.gate_for(path)
        return {
            **self.cpu.to_dict(),
            "session_config": dict(self.session_settings.config),
            "graph_optimization": self.session_settings.optimization,
            "gate_covered": bool(gated and gated.get("status") == "passed"),
            "gate": gated,
        }

    # --- stages -----------------------------------------------------------------------------------
    def to_pixels(self, data: bytes) -> tuple[np.ndarray, Decoded, Timings]:
        """Decode + preprocess one image to float32 [3, 224, 224] with this engine's config, limits and
        JPEG path. Raises ``ImageError``."""
        return pixel_values(data, self.config, self.limits, fast_jpeg=self.fast_jpeg, exif=self.exif)

    def run_model(self, pixels: np.ndarray) -> np.ndarray:
        """Raw (unnormalized) features for [N,3,H,W] input, one image per session run (batch invariance)."""
        outs = [self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels[i : i + 1]})[0] for i in range(pixels.shape[0])]
        return np.concatenate(outs, axis=0)

    def embed_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-only path: unit vectors [N, dim] and their pre-normalization norms [N]."""
        return l2_normalize(self.run_model(pixels))

    # --- public API ---------------------------------------------------------------------------------
    def embed_text(self, text: str) -> TextEmbedding:
        """Embed one text into the images' space; raises ``TextError`` for a text it refuses."""
        if self.text is None:
            raise ModelDirError("no text tower loaded: from_dir(..., text=True) on a model built with one")
        return self.text.embed(text)

    def embed_one(self, data: bytes) -> Embedding:
        """Embed one image; raises ``ImageError`` (with ``code`` and ``http_status``) for bad input."""
        pixels, decoded, t = self.to_pixels(data)
        t0 = time.perf_counter()
        features = self.run_model(pixels[None])
        inference_ms = (time.perf_counter() - t0) * 1e3
        unit, norms = l2_normalize(features)
        return Embedding(
            vector=unit[0],
            norm=float(norms[0]),
            width=decoded.width,
            height=decoded.height,
            model=self.model_id,
            format=decoded.format,
            timings=Timings(t.decode_ms, t.preprocess_ms, inference_ms),
        )


def load_text_tower(
    model_dir: Path,
    manifest: Manifest,
    *,
    model_id: str,
    precision: Precision,
    cpu: CpuInfo,
    image_settings: SessionSettings,
) -> TextEncoder:
    """The text tower's session (the image session's threads, its own int8 tuning) and its tokenizer."""
    tower = manifest.text_tower
    if tower is None:
        raise ModelDirError(f"{model_dir} has no text tower (built with --no-text)")
    path = model_dir / (tower.file if precision == "int8" else tower.fp32_file)
    if not path.exists():
        raise ModelDirError(f"{path} not found")
    int8 = precision == "int8" and tower.precision == "int8"
    tuning = int8_tuning(cpu, tower.quantization) if int8 else SessionTuning(optimization="all")
    settings = replace(image_settings, optimization=tuning.optimization, config=tuning.config)
    tokenizer = ClipTokenizer(
        model_dir / tower.tokenizer, context_length=tower.context_length, pad_id=tower.pad_id, eos_id=tower.eos_id
    )
    return TextEncoder(create_session(path, settings), tokenizer, model_id, io=(tower.input_name, tower.output_name))
