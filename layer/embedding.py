"""What the engine returns for any input: one ``Embedding`` type for every tower, and the one L2
normalization.

An image's embedding carries the image's size and format, a text's the tokens kept and whether it was cut at
the context; both carry the unit vector, the norm it had (raw CLIP features = vector × norm), the model id
and where the time went.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from layer.tags import Tag


@dataclass(frozen=True)
class Timings:
    decode_ms: float = 0.0  # image: bytes → pixels
    preprocess_ms: float = 0.0  # image: pixels → pixel_values
    tokenize_ms: float = 0.0  # text: cleaning and BPE
    inference_ms: float = 0.0


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray = field(repr=False)  # float32 [dim], unit L2 norm
    norm: float  # L2 norm before normalization: raw CLIP features = vector * norm
    model: str
    tower: str = "image"  # "image" | "text"
    width: int = 0  # image: its size after EXIF orientation (0 for a text)
    height: int = 0
    format: str = "unknown"  # image: the decoder's format name
    tokens: int = 0  # text: tokens kept, <|startoftext|> and <|endoftext|> included (0 for an image)
    truncated: bool = False  # text: it had more tokens than the context holds, and was cut
    timings: Timings = field(default_factory=Timings, compare=False)
    tags: tuple[Tag, ...] = ()  # image: its zero-shot tags, best first (a model with a label vocabulary)

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


def l2_normalize(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows (float32) and the norms they had (float32): raw features = unit × norm."""
    norms = np.linalg.norm(features.astype(np.float64), axis=-1, keepdims=True)
    unit = (features / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit, norms[..., 0].astype(np.float32)
