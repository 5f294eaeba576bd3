"""The four contenders, each behind the same two calls: a file end to end, and a tensor model-only."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

from layer.manifest import FP32_FILE, MODEL_FILE, PREPROCESSOR_FILE, Manifest

CONTENDERS = ("ours-int8", "ours-fp32", "fastembed-fp32", "hf-torch")


class Contender(Protocol):
    def embed_file(self, path: Path) -> np.ndarray: ...
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray: ...


class Ours:
    def __init__(self, model_dir: Path, precision: str, threads: int) -> None:
        from layer import Embedder

        self.e = Embedder.from_dir(model_dir, precision=precision, threads=threads)  # type: ignore[arg-type]

    def embed_file(self, path: Path) -> np.ndarray:
        return self.e.embed_one(path.read_bytes()).vector

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.e.embed_pixels(pixels)[0][0]


class FastEmbed:
    """fastembed's ImageEmbedding on our fp32 export: the same weights, its own preprocessing and session."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        from fastembed import ImageEmbedding

        self._tmp = tempfile.TemporaryDirectory(prefix="bench-fastembed-")
        d = Path(self._tmp.name)
        (d / MODEL_FILE).symlink_to((model_dir / FP32_FILE).resolve())  # fastembed loads model.onnx
        (d / PREPROCESSOR_FILE).symlink_to((model_dir / PREPROCESSOR_FILE).resolve())
        self.m = ImageEmbedding("Qdrant/clip-ViT-B-32-vision", specific_model_path=str(d), threads=threads)
        self.session = self.m.model.model  # type: ignore[attr-defined]
        self.input = self.session.get_inputs()[0].name

    def embed_file(self, path: Path) -> np.ndarray:
        return next(iter(self.m.embed([str(path)], batch_size=1)))

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input: pixels})[0][0]
        return out / np.linalg.norm(out)


class HFTorch:
    """transformers ``CLIPVisionModelWithProjection`` + ``CLIPImageProcessor`` in PyTorch (eager, fp32)."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from PIL import Image
        from transformers import CLIPImageProcessor

        from layer.convert.source import load_source

        torch.set_num_threads(threads)
        src = Manifest.read(model_dir).source
        self.torch, self.Image = torch, Image
        self.model = load_source(src["name"], revision=src.get("revision"), seed=src.get("seed", 0)).model.eval()
        self.processor = CLIPImageProcessor.from_pretrained(model_dir)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(pixel_values=self.torch.from_numpy(pixels)).image_embeds[0].numpy()
        return out / np.linalg.norm(out)

    def embed_file(self, path: Path) -> np.ndarray:
        with self.Image.open(path) as img:
            pixels = self.processor(images=img, return_tensors="np")["pixel_values"]
        return self.embed_pixels(pixels.astype(np.float32))


def load(name: str, model_dir: Path, threads: int) -> Contender:
    if name == "ours-int8":
        return Ours(model_dir, "int8", threads)
    if name == "ours-fp32":
        return Ours(model_dir, "fp32", threads)
    if name == "fastembed-fp32":
        return FastEmbed(model_dir, threads)
    if name == "hf-torch":
        return HFTorch(model_dir, threads)
    raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS}")
