"""The engine: image bytes (and texts) → L2-normalized CLIP embeddings, from a model directory.

``Embedder.from_dir`` loads the towers the manifest lists (``layer.tower``: one session loader for both),
tunes them for the CPU it measures (``layer.cpu.probe_u8s8``) and, unless told not to, embeds the manifest's
canaries and compares them with the build's vectors (``layer.selfcheck``): a function that got a CPU or a
file that computes other vectors knows it before it writes one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from layer.config import PreprocessConfig
from layer.cpu import CpuInfo, Probe, probe_u8s8
from layer.decode import Decoded, decode
from layer.embedding import Embedding, Timings, l2_normalize
from layer.errors import ModelDirError
from layer.limits import Limits
from layer.manifest import Manifest
from layer.preprocess import preprocess
from layer.selfcheck import SelfCheck, run_self_check
from layer.settings import EngineSettings
from layer.tags import Tagger
from layer.text import ClipTokenizer, TextEncoder
from layer.tower import Precision, TowerSession

__all__ = ["Embedder", "Embedding", "Timings", "l2_normalize", "pixel_values"]

# The default JPEG path: DCT-domain downscale (1/2…1/8) that keeps the shortest side ≥ 1.5× the resize
# target, then the exact bicubic resize. A 12-MP photo decodes at 1/8 (500×375): 27 ms instead of 230 ms for
# decode + resize, at cosine ≥ 0.99999 to the exact path on the benchmark photos (the test requires ≥ 0.9995:
# tests/layer/test_fidelity.py).
FAST_JPEG_FACTOR = 1.5


def covered(gate: dict[str, Any] | None) -> bool:
    """Whether a tower's build gate passed on a kernel path (its ``cpu_paths`` entry for the path)."""
    return bool(gate and gate.get("status") == "passed")


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
    >>> emb.embed_one(jpeg_bytes).vector   # float32 [dim], unit norm; ImageError (code, http_status) if bad
    """

    def __init__(
        self,
        image: TowerSession,
        config: PreprocessConfig,
        *,
        manifest: Manifest,
        model_id: str,
        limits: Limits | None = None,
        fast_jpeg: bool = True,
        exif: bool = True,
        cpu: CpuInfo | None = None,
        probe: Probe | None = None,
    ) -> None:
        self.image = image
        self.config = config
        self.manifest = manifest
        self.model_id = model_id
        self.limits = limits or Limits()
        self.fast_jpeg = fast_jpeg
        self.exif = exif
        self.cpu = cpu or CpuInfo.detect()
        self.probe = probe
        self.text: TextEncoder | None = None  # from_dir(..., text=True)
        self.self_check: SelfCheck | None = None  # from_dir(..., self_check=True)
        self.tagger: Tagger | None = None  # a model with a label vocabulary (manifest.tags)
        self.dim = image.dim

    @property
    def session(self) -> Any:
        """The image tower's onnxruntime session."""
        return self.image.session

    @property
    def session_settings(self) -> Any:
        return self.image.settings

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
        self_check: bool = True,
    ) -> Embedder:
        """``settings``: the environment's (``EngineSettings.from_env``) unless given; ``threads`` and
        ``limits`` override them. ``text``: also load the text tower if the model has one (the API's text
        and search routes need it; the S3 function does not, and skips its memory and its INIT time).
        ``self_check``: embed the manifest's canaries now (the result is ``self_check``; it never raises)."""
        settings = settings or EngineSettings.from_env()
        model_dir = Path(model_dir)
        manifest = Manifest.read(model_dir)
        if verify:
            manifest.verify_files(model_dir)
        cpu = CpuInfo.detect()
        spec = manifest.image
        int8 = precision == "int8" and spec.precision == "int8"
        probe = probe_u8s8(cpu.arch) if int8 else None
        load = {"precision": precision, "cpu": cpu, "engine": settings, "threads": threads, "probe": probe}
        image = TowerSession.load(model_dir, spec, **load)  # type: ignore[arg-type]
        if spec.preprocessor is None:
            raise ModelDirError(f"{model_dir}: the image tower names no preprocessor config")
        engine = cls(
            image,
            PreprocessConfig.from_file(model_dir / spec.preprocessor),
            manifest=manifest,
            model_id=manifest.model_id + ("" if int8 else "@fp32"),  # fp32 vectors never pass as int8 ones
            limits=limits or settings.limits,
            cpu=cpu,
            probe=probe,
            fast_jpeg=fast_jpeg,
            exif=exif,
        )
        tspec = manifest.text
        if text and tspec is not None and tspec.tokens is not None:
            tower = TowerSession.load(model_dir, tspec, **load)  # type: ignore[arg-type]
            tokenizer = ClipTokenizer(model_dir / tspec.tokens.file, tspec.tokens)
            engine.text = TextEncoder(tower, tokenizer, engine.model_id)
        if manifest.tags is not None:
            engine.tagger = Tagger.load(model_dir, manifest.tags, manifest.dim)
        if self_check:
            engine.self_check = run_self_check(engine)
        return engine

    def towers(self) -> dict[str, TowerSession]:
        """The loaded towers by name."""
        loaded = {self.image.spec.name: self.image}
        if self.text is not None:
            loaded[self.text.tower.spec.name] = self.text.tower
        return loaded

    def cpu_report(self) -> dict[str, Any]:
        """This CPU, its int8 kernel path, what the probe measured, the session options chosen per tower,
        whether the build's gate covered that path, and the self-check (INIT log, ``GET /model``)."""
        path = self.cpu.kernel_path
        gated = self.manifest.image.gate_for(path)
        flags_exact = self.cpu.exact_u8s8
        return {
            **self.cpu.to_dict(),
            "probe": None
            if self.probe is None
            else {**self.probe.to_dict(), "flags_agree": self.probe.u8s8_exact == flags_exact},
            "session_config": dict(self.image.settings.config),
            "graph_optimization": self.image.settings.optimization,
            "towers": {
                name: {**t.report(), "gate_covered": covered(t.spec.gate_for(path))}
                for name, t in self.towers().items()
            },
            "gate_covered": covered(gated),
            "gate": gated,
            "self_check": None if self.self_check is None else self.self_check.to_dict(),
        }

    # --- stages -----------------------------------------------------------------------------------
    def to_pixels(self, data: bytes) -> tuple[np.ndarray, Decoded, Timings]:
        """Decode + preprocess one image to float32 [3, H, W] with this engine's config, limits and JPEG
        path. Raises ``ImageError``."""
        return pixel_values(data, self.config, self.limits, fast_jpeg=self.fast_jpeg, exif=self.exif)

    def run_model(self, pixels: np.ndarray) -> np.ndarray:
        """Raw (unnormalized) features for [N,3,H,W] input, one image per session run (batch invariance)."""
        return self.image.features(pixels)

    def embed_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-only path: unit vectors [N, dim] and their pre-normalization norms [N]."""
        return self.image.embed(pixels)

    # --- public API ---------------------------------------------------------------------------------
    def embed_text(self, text: str) -> Embedding:
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
            timings=Timings(decode_ms=t.decode_ms, preprocess_ms=t.preprocess_ms, inference_ms=inference_ms),
            tags=self.tagger.tag(unit[0]) if self.tagger is not None else (),
        )
