"""Zero-shot tags: an image's nearest labels of the model's vocabulary (``manifest.tags``).

The vocabulary's vectors were made at build time by the fp32 text tower from "a photo of a {label}." (or the
build's prompt), so tagging an image is one product of its unit vector with the [labels, dim] matrix and a
partial sort: tens of microseconds for a few hundred labels, measured by ``bench.tags``. A tag's ``score`` is
the cosine similarity, the same scale as a search's score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layer.errors import ModelDirError
from layer.manifest import TagSpec


@dataclass(frozen=True)
class Tag:
    label: str
    score: float  # cosine similarity of the image and the label's prompt


class Tagger:
    def __init__(self, labels: list[str], vectors: np.ndarray, spec: TagSpec) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(labels):
            raise ModelDirError(f"tags: {len(labels)} labels but label vectors of shape {vectors.shape}")
        self.labels = labels
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.spec = spec
        self.index = {label: i for i, label in enumerate(labels)}

    @classmethod
    def load(cls, model_dir: str | Path, spec: TagSpec, dim: int) -> Tagger:
        model_dir = Path(model_dir)
        try:
            labels = json.loads((model_dir / spec.names_file).read_text())["labels"]
            vectors = np.load(model_dir / spec.file, allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelDirError(f"{model_dir}: the tags' label files cannot be read: {exc}") from exc
        if vectors.shape[-1] != dim:
            raise ModelDirError(f"tags: label vectors of dimension {vectors.shape[-1]}, the model's is {dim}")
        return cls([str(x) for x in labels], vectors, spec)

    def tag(self, vector: np.ndarray, k: int | None = None) -> tuple[Tag, ...]:
        """The ``k`` (default: the manifest's ``top_k``) labels nearest to a unit image vector, best first."""
        k = min(self.spec.top_k if k is None else k, len(self.labels))
        if k <= 0:
            return ()
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return tuple(Tag(self.labels[i], round(float(scores[i]), 4)) for i in top)

    def vector(self, label: str) -> np.ndarray | None:
        """A label's vector (a search "by tag" ranks its images by it), or None if not in the vocabulary."""
        i = self.index.get(label)
        return None if i is None else self.vectors[i]
