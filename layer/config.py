"""The preprocessing contract, read from HF ``preprocessor_config.json`` (``CLIPImageProcessor`` format).

Reading the same file that transformers and fastembed read keeps the three from drifting apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PIL_BICUBIC = 3


def _edge(value: Any) -> int:
    """HF accepts ``224``, ``{"shortest_edge": 224}`` or ``{"height": 224, "width": 224}``; CLIP's are square."""
    if isinstance(value, int):
        return value
    if "height" in value or "width" in value:
        if value.get("height") != value.get("width"):
            raise ValueError(f"non-square size {value!r} is not supported")
        return int(value["height"])
    return int(value["shortest_edge"])


@dataclass(frozen=True)
class PreprocessConfig:
    shortest_edge: int = 224
    crop_size: int = 224
    resample: int = PIL_BICUBIC
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    do_convert_rgb: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        return cls(
            shortest_edge=_edge(d.get("size", 224)),
            crop_size=_edge(d.get("crop_size", 224)),
            resample=int(d.get("resample", PIL_BICUBIC)),
            rescale_factor=float(d.get("rescale_factor", 1 / 255)),
            image_mean=tuple(d.get("image_mean", CLIP_MEAN)),
            image_std=tuple(d.get("image_std", CLIP_STD)),
            do_resize=bool(d.get("do_resize", True)),
            do_center_crop=bool(d.get("do_center_crop", True)),
            do_rescale=bool(d.get("do_rescale", True)),
            do_normalize=bool(d.get("do_normalize", True)),
            do_convert_rgb=bool(d.get("do_convert_rgb", True)),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> PreprocessConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``CLIPImageProcessor`` JSON that transformers and fastembed load."""
        return {
            "crop_size": {"height": self.crop_size, "width": self.crop_size},
            "do_center_crop": self.do_center_crop,
            "do_convert_rgb": self.do_convert_rgb,
            "do_normalize": self.do_normalize,
            "do_rescale": self.do_rescale,
            "do_resize": self.do_resize,
            "image_mean": list(self.image_mean),
            "image_processor_type": "CLIPImageProcessor",
            "image_std": list(self.image_std),
            "resample": self.resample,
            "rescale_factor": self.rescale_factor,
            "size": {"shortest_edge": self.shortest_edge},
        }
