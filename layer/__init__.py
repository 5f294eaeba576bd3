"""clip-lambda model layer: build a gated int8 CLIP ViT-B/32 ONNX model and embed images with it.

The engine half (this package minus ``layer.convert``) imports only onnxruntime, numpy and pillow, so the
Lambda image stays small. ``layer.convert`` (torch, transformers, onnx) is imported only by the build command.

The names below load on first use: ``import layer.cpu`` or ``layer.manifest`` must not start onnxruntime,
whose CPU detection crashes in an arm64 process emulated without an arm64 /proc/cpuinfo (image_check.py
looks before it leaps).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layer.embedder import Embedder
    from layer.embedding import Embedding
    from layer.errors import (
        CorruptImage,
        EmptyImage,
        ImageError,
        ImageTooLarge,
        ModelDirError,
        NotAnImage,
        TooManyPixels,
    )
    from layer.limits import Limits

_EXPORTS = {
    "Embedder": "layer.embedder",
    "Embedding": "layer.embedding",
    "CorruptImage": "layer.errors",
    "EmptyImage": "layer.errors",
    "ImageError": "layer.errors",
    "ImageTooLarge": "layer.errors",
    "ModelDirError": "layer.errors",
    "NotAnImage": "layer.errors",
    "TooManyPixels": "layer.errors",
    "Limits": "layer.limits",
}

__all__ = [
    "CorruptImage",
    "Embedder",
    "Embedding",
    "EmptyImage",
    "ImageError",
    "ImageTooLarge",
    "Limits",
    "ModelDirError",
    "NotAnImage",
    "TooManyPixels",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'layer' has no attribute {name!r}")
