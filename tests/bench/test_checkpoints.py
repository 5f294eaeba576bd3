"""Local CLIP checkpoints for measurements and tests (bench/checkpoints.py): the published geometries, a
checkpoint whose towers each carry the projection, and outliers that keep the fp32 function where the kind
says so (what makes int8 hard, not what makes the model wrong)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.checkpoints import ARCHITECTURES, Outliers, add_outliers, write_checkpoint

# (hidden, layers, heads, patch, image size) of the vision tower, (hidden, layers, heads) of the text tower,
# projection: as published (openai/clip-vit-*, laion/CLIP-ViT-B-32-laion2B-s34B-b79K).
PUBLISHED = {
    "ViT-B-32": ((768, 12, 12, 32, 224), (512, 12, 8), 512),
    "ViT-B-16": ((768, 12, 12, 16, 224), (512, 12, 8), 512),
    "ViT-L-14": ((1024, 24, 16, 14, 224), (768, 12, 12), 768),
    "ViT-L-14-336": ((1024, 24, 16, 14, 336), (768, 12, 12), 768),
    "ViT-B-32-laion": ((768, 12, 12, 32, 224), (512, 12, 8), 512),
}
TINY = {
    "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
               "patch_size": 16, "image_size": 64},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2},
    "projection_dim": 24,
}  # fmt: skip


def test_the_architectures_are_the_published_geometries() -> None:
    assert set(ARCHITECTURES) == set(PUBLISHED)
    for arch, (vision, text, projection) in PUBLISHED.items():
        v, t = ARCHITECTURES[arch]["vision"], ARCHITECTURES[arch]["text"]
        assert (v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"], v["patch_size"],
                v["image_size"]) == vision, arch  # fmt: skip
        assert (t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"]) == text, arch
        assert ARCHITECTURES[arch]["projection_dim"] == projection and v["intermediate_size"] == 4 * v["hidden_size"]
    assert ARCHITECTURES["ViT-B-32-laion"]["vision"]["hidden_act"] == "gelu"  # LAION's exact GELU, not quick_gelu
    assert "hidden_act" not in ARCHITECTURES["ViT-B-32"]["vision"]


def test_each_tower_of_a_checkpoint_carries_the_projection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tower loaded alone (CLIPVisionModelWithProjection, as the build loads it) reads projection_dim from its
    own config; ``layers`` cuts both towers, the widths stay the architecture's."""
    monkeypatch.setitem(ARCHITECTURES, "tiny", TINY)
    write_checkpoint(tmp_path, "tiny", seed=3, layers=1)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["projection_dim"] == config["vision_config"]["projection_dim"] == 24
    assert config["text_config"]["projection_dim"] == 24
    assert config["vision_config"]["num_hidden_layers"] == config["text_config"]["num_hidden_layers"] == 1
    assert (config["vision_config"]["hidden_size"], config["vision_config"]["patch_size"]) == (32, 16)
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 64, "width": 64} and processor["size"] == {"shortest_edge": 64}
    record = json.loads((tmp_path / "clip_lambda_checkpoint.json").read_text())
    assert record == {"architecture": "tiny", "seed": 3, "layers": 1, "outliers": None}


def tiny_model() -> Any:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=TINY["text"], vision_config=TINY["vision"], projection_dim=24)
    return transformers.CLIPModel(config).eval()


def test_hot_layernorm_gains_keep_the_fp32_function_and_make_the_outliers() -> None:
    import torch

    model, pixels = tiny_model(), torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model.get_image_features(pixel_values=pixels)
        gains = [layer.layer_norm1.weight.clone() for layer in model.vision_model.encoder.layers]
        add_outliers(model, Outliers(seed=5, ln_gain=300.0, ln_channels=2, ln_layers=2, residual=0.0, mlp=0.0))
        after = model.get_image_features(pixel_values=pixels)
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-4)  # the function is unchanged
    hot = [int((layer.layer_norm1.weight / g > 100).sum()) for layer, g in
           zip(model.vision_model.encoder.layers, gains, strict=True)]  # fmt: skip
    assert sorted(hot) == [0, 2, 2]  # 2 of the 3 layers, 2 channels each, scaled by 300


def test_the_outliers_follow_their_seed() -> None:
    import torch

    a, b = tiny_model(), tiny_model()
    add_outliers(a, Outliers(seed=7))
    add_outliers(b, Outliers(seed=7))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = tiny_model()
    add_outliers(c, Outliers(seed=8))
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))
