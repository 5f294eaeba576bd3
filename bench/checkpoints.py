"""Local ``save_pretrained`` CLIP checkpoints for measurements and tests, since the HuggingFace Hub is out of
reach here: the published architectures with seeded random weights, and random weights given the outlier
activations of trained CLIP, which is what makes int8 hard on real checkpoints.

Trained ViTs (CLIP among them) carry a few activation channels far larger than the rest ("massive
activations", arXiv 2402.17762; LLM.int8() for language models): LayerNorm gains of a few hundred on a
handful of channels, and residual channels 100-1000x the rest that hit every following LayerNorm's input.
Per-tensor int8 activations then spend their 255 steps on those channels and round the others to zero.
``add_outliers`` writes three such kinds into a checkpoint, each at a strength published for trained models:

- **hot LayerNorm gains** (``ln_gain``): a few channels of ``layer_norm1``/``layer_norm2`` scaled by ``F``
  and the consumers' input rows divided by ``F``, so the fp32 function is unchanged and only the activations
  entering q/k/v and fc1 carry the outliers (what SmoothQuant is built to undo);
- **massive residual channels** (``residual``): a constant ``M`` added to a few residual channels by one
  layer's fc2 bias and taken out again a few layers later, so every LayerNorm in between normalizes a vector
  dominated by those channels;
- **hot MLP units** (``mlp``): a few fc1 units biased far into GELU's linear range (the constant taken out
  again by fc2's bias), so fc2's input carries them; born after a nonlinearity, no scale migration reaches
  them (only fp32 or a split does).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The published CLIP vision/text geometries (HF config fields). ``layers`` may be cut for fast tests; the
# widths, patch, image size and projection (the vector's dimension) stay those of the named model.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "ViT-B-32": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "patch_size": 32, "image_size": 224},
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
        "projection_dim": 512,
    },
    "ViT-B-16": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "patch_size": 16, "image_size": 224},
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
        "projection_dim": 512,
    },
    "ViT-L-14": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "patch_size": 14, "image_size": 224},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        "projection_dim": 768,
    },
    "ViT-L-14-336": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "patch_size": 14, "image_size": 336},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        "projection_dim": 768,
    },
    # LAION's HF-format checkpoints (laion/CLIP-ViT-B-32-laion2B-s34B-b79K and kin): OpenAI's geometry, but
    # the exact GELU instead of OpenAI's quick_gelu in both towers.
    "ViT-B-32-laion": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "patch_size": 32, "image_size": 224, "hidden_act": "gelu"},
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8,
                 "hidden_act": "gelu"},
        "projection_dim": 512,
    },
}  # fmt: skip


@dataclass(frozen=True)
class Outliers:
    """Where and how strong (see the module docstring); ``seed`` picks the channels and layers."""

    seed: int = 0
    ln_gain: float = 300.0  # F: LayerNorm gain on the hot channels
    ln_channels: int = 4
    ln_layers: int = 6  # how many layers get hot LayerNorm gains
    residual: float = 300.0  # M, in units of the residual stream's typical magnitude
    residual_channels: int = 2
    residual_span: tuple[int, int] = (2, 9)  # added after this layer, removed after that one
    mlp: float = 250.0  # fc1 bias of the hot MLP units (GELU is linear there)
    mlp_units: int = 3
    mlp_layers: int = 2


def write_checkpoint(
    out: Path, arch: str = "ViT-B-32", *, seed: int = 0, layers: int | None = None, outliers: Outliers | None = None
) -> Path:
    """A full ``CLIPModel`` + ``CLIPImageProcessor`` (at the architecture's image size) in ``out``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    spec = ARCHITECTURES[arch]
    vision = dict(spec["vision"])
    text = dict(spec["text"])
    if layers is not None:
        vision["num_hidden_layers"] = layers
        text["num_hidden_layers"] = layers
    # Each tower's config carries the projection too, as the published config.json files do: a tower loaded
    # on its own (CLIPVisionModelWithProjection) reads it from there.
    vision["projection_dim"] = text["projection_dim"] = spec["projection_dim"]
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec["projection_dim"])
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    if outliers is not None:
        add_outliers(model, outliers)
    model.save_pretrained(out)
    size = vision["image_size"]
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)
    (out / "clip_lambda_checkpoint.json").write_text(
        json.dumps({"architecture": arch, "seed": seed, "layers": layers,
                    "outliers": asdict(outliers) if outliers else None}, indent=2) + "\n"
    )  # fmt: skip
    return out


def add_outliers(model: Any, o: Outliers) -> None:
    """Give the vision tower of a ``CLIPModel`` the outliers of ``o`` (in place)."""
    import torch

    g = torch.Generator().manual_seed(o.seed)
    layers = model.vision_model.encoder.layers
    n, width = len(layers), model.config.vision_config.hidden_size

    def pick(k: int, high: int) -> list[int]:
        return sorted(torch.randperm(high, generator=g)[:k].tolist())

    with torch.no_grad():
        for i in pick(min(o.ln_layers, n), n):
            layer = layers[i]
            for ln, consumers in (
                (layer.layer_norm1, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
                (layer.layer_norm2, (layer.mlp.fc1,)),
            ):
                ch = pick(o.ln_channels, width)
                ln.weight[ch] *= o.ln_gain
                ln.bias[ch] *= o.ln_gain
                for lin in consumers:
                    lin.weight[:, ch] /= o.ln_gain  # y = W x: the input rows of W^T, fp32 function unchanged
        start, stop = (min(s, n - 1) for s in o.residual_span)
        if o.residual and stop > start:
            # The residual stream's typical channel magnitude right after the embeddings' LayerNorm is ~1.
            ch = pick(o.residual_channels, width)
            signs = torch.where(torch.rand(len(ch), generator=g) < 0.5, -1.0, 1.0)
            layers[start].mlp.fc2.bias[ch] += o.residual * signs
            layers[stop].mlp.fc2.bias[ch] -= o.residual * signs
        early = max(o.mlp_layers, n // 3)  # massive activations arise in the early layers (2402.17762)
        for i in pick(min(o.mlp_layers, early), early):
            mlp = layers[i].mlp
            units = pick(o.mlp_units, mlp.fc1.out_features)
            mlp.fc1.bias[units] += o.mlp
            # GELU is the identity that far out: take the constant back out after fc2, so the units still carry
            # their input and the tower does not drift into one constant direction for every image.
            mlp.fc2.bias -= o.mlp * mlp.fc2.weight[:, units].sum(dim=1)
