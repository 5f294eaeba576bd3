"""The ONNX export of each tower (layer/convert/export.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require


@pytest.mark.slow
def test_export_pools_at_the_first_eos_under_both_config_styles(tmp_path: Path) -> None:
    """openai/clip-vit-base-patch32's config still says eos_token_id=2 (HF then pools at the largest id, which
    is <|endoftext|>'s); newer configs say 49407 (HF pools at its first occurrence). Both exports, fed padded
    ids, equal HF with the attention mask. A 2-layer tower keeps this fast."""
    torch = require("torch")
    transformers = require("transformers")
    import onnxruntime as ort

    from layer.convert.export import export_text_onnx

    ids = np.full((3, 77), 49407, dtype=np.int64)
    ids[:, 0] = 49406
    ids[0, 1:4] = [320, 1125, 539]
    ids[1, 1:70] = np.arange(1000, 1069)
    ids[2, 1:2] = 2368
    mask = (np.cumsum(ids == 49407, axis=1) <= 1).astype(np.int64)  # up to and including the first EOS
    for eos in (2, 49407):
        torch.manual_seed(0)
        config = transformers.CLIPTextConfig(
            num_hidden_layers=2, hidden_size=64, intermediate_size=128, eos_token_id=eos
        )
        model = transformers.CLIPTextModelWithProjection(config).eval()
        model.set_attn_implementation("eager")
        path = export_text_onnx(model, tmp_path / f"text-{eos}.onnx")
        ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).text_embeds.numpy()
        assert np.max(np.abs(ours - ref)) <= 1e-5, eos
