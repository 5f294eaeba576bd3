"""clip-lambda model layer: build a gated int8 CLIP ViT-B/32 ONNX model and embed images with it.

The engine half (this package minus ``layer.build``) imports only onnxruntime, numpy and pillow, so the
Lambda image stays small. ``layer.build`` (torch, transformers, onnx) is imported only by the build command.
"""

from layer.embedder import Embedder, Embedding
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
