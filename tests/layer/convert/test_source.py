"""Where the build's weights come from (layer/convert/source.py): a local ``save_pretrained`` directory of any
CLIP class, or ``random-init``, the exact architecture with seeded weights."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_vision_with_projection_checkpoint_loads(tmp_path: Path) -> None:
    """A ``CLIPVisionModelWithProjection`` save_pretrained dir goes through the same from_pretrained path."""
    from layer.convert.source import load_source, random_init

    random_init(seed=3).save_pretrained(tmp_path)
    loaded = load_source(str(tmp_path))
    assert loaded.source == "local"
    assert loaded.model.config.projection_dim == 512 and loaded.model.config.patch_size == 32


@pytest.mark.slow
def test_random_init_is_architecture_exact_and_seeded() -> None:
    from layer.convert.source import load_source

    a, b = load_source("random-init", seed=7), load_source("random-init", seed=7)
    cfg = a.model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.patch_size) == (768, 12, 12, 32)
    assert (cfg.image_size, cfg.projection_dim, cfg.hidden_act) == (224, 512, "quick_gelu")
    n_params = sum(p.numel() for p in a.model.parameters())
    assert 87_000_000 < n_params < 89_000_000  # ViT-B/32 vision tower + projection
    wa = a.model.visual_projection.weight
    assert bool((wa == b.model.visual_projection.weight).all())
    assert "untrained" in a.model_id


def test_a_source_is_a_local_directory_or_a_hub_id_and_nothing_else(tmp_path: Path) -> None:
    from layer.convert.source import SourceUnavailable, _where

    assert _where(str(tmp_path)) == ("local", tmp_path)
    assert _where("openai/clip-vit-base-patch32")[0] == "hub"
    for missing in (str(tmp_path / "nope"), "./nope", "a/b/c"):  # a path, not a hub id: say so
        with pytest.raises(SourceUnavailable, match="no such directory"):
            _where(missing)


@pytest.mark.parametrize("offline", ["1", "true", "YES"])
def test_an_offline_hub_is_unreachable_without_a_connection(offline: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from layer.convert import source

    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(source.socket, "create_connection", lambda *a, **k: pytest.fail("connected"))
    assert source.hub_reachable() is False


def test_the_hub_is_reachable_when_its_endpoint_accepts_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from layer.convert import source

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert source.hub_reachable(timeout=5) is True
    assert source.hub_reachable(timeout=5) is False  # closed: refused at once, no retries
