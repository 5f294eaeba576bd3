"""Export the towers to ONNX (torch.onnx dynamo exporter, opset 18, dynamic batch):

- vision tower + projection: ``pixel_values`` float32 [N,3,S,S] (S: the checkpoint's crop size, 224 or 336) →
  ``image_embeds`` [N, dim] (dim: its projection_dim, 512 for ViT-B, 768 for ViT-L);
- text tower + projection: ``input_ids`` int64 [N,77] → ``text_embeds`` [N, dim].

Both return the raw projected features (``get_image_features`` / ``get_text_features``), before L2 norm.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from layer.manifest import BOS_ID, CONTEXT_LENGTH, EOS_ID, INPUT_NAME, OUTPUT_NAME, TEXT_INPUT_NAME, TEXT_OUTPUT_NAME

OPSET = 18


class _ImageEmbeds(torch.nn.Module):
    """Return the projected features only (the raw output of ``get_image_features``, before L2 norm)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).image_embeds


class _TextEmbeds(torch.nn.Module):
    """``get_text_features`` from the ids alone: the tower is causal and pools at the first <|endoftext|>, so
    the padding after it needs no attention mask (tests/layer/convert/test_export.py checks it)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).text_embeds


def _export(wrapper: torch.nn.Module, example: torch.Tensor, input_name: str, output_name: str, out: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper.eval(),
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes={input_name: {0: batch}},  # the forward's parameter is named as the input
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(out), external_data=False)
    return out


def export_onnx(model: torch.nn.Module, out: Path, *, image_size: int = 224) -> Path:
    example = torch.zeros(2, 3, image_size, image_size)
    return _export(_ImageEmbeds(model), example, INPUT_NAME, OUTPUT_NAME, out)


def export_text_onnx(model: torch.nn.Module, out: Path, *, context_length: int = CONTEXT_LENGTH) -> Path:
    """The sequence length is fixed at the context: the int8 model's activation scales are taken over the
    whole [1, 77] tensor, so a shorter input would give other vectors than the gated ones."""
    example = torch.full((2, context_length), EOS_ID, dtype=torch.long)
    example[:, 0] = BOS_ID  # <|startoftext|>, a few tokens, then <|endoftext|> and its padding
    example[0, 1:4] = torch.tensor([320, 1125, 539])
    example[1, 1:8] = torch.tensor([320, 1125, 539, 320, 2368, 593, 320])
    return _export(_TextEmbeds(model), example, TEXT_INPUT_NAME, TEXT_OUTPUT_NAME, out)
