"""Export the vision tower + projection to ONNX: ``pixel_values`` [N,3,224,224] → ``image_embeds`` [N,512]."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from layer.manifest import INPUT_NAME, OUTPUT_NAME

OPSET = 18


class _ImageEmbeds(torch.nn.Module):
    """Return the projected features only (the raw output of ``get_image_features``, before L2 norm)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).image_embeds


def export_onnx(model: torch.nn.Module, out: Path, *, image_size: int = 224, opset: int = OPSET) -> Path:
    wrapper = _ImageEmbeds(model).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"pixel_values": {0: batch}},
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(out), external_data=False)
    return out
