"""Load a CLIP checkpoint's towers: the vision tower + projection and the text tower + projection, from a hub
id, a local ``save_pretrained`` dir, or random weights."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)

from layer.manifest import PREPROCESSOR_FILE
from layer.settings import DEFAULT_SOURCE

RANDOM_INIT = "random-init"
RANDOM_MODEL_ID = "random-init/clip-vit-base-patch32-untrained"


class SourceUnavailable(RuntimeError):
    """The checkpoint cannot be fetched (hub unreachable, no such repo) or read."""


class NoTextTower(RuntimeError):
    """The checkpoint loads but holds no text tower (a ``CLIPVisionModelWithProjection``): not a reason to
    fall back to another source, and not one to ship random text weights either."""


@dataclass(frozen=True)
class LoadedModel:
    model: CLIPVisionModelWithProjection
    model_id: str
    source: str  # "hub" | "local" | "random-init"
    revision: str | None
    preprocessor: dict[str, object] | None  # preprocessor_config.json of the checkpoint, if it has one


@dataclass(frozen=True)
class LoadedText:
    model: CLIPTextModelWithProjection
    context_length: int  # max_position_embeddings: 77 for every OpenAI CLIP


def random_init(seed: int = 0) -> CLIPVisionModelWithProjection:
    """ViT-B/32 vision tower with seeded random weights (``CLIPVisionConfig()`` defaults are ViT-B/32)."""
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig())


def random_text_init(seed: int = 0) -> CLIPTextModelWithProjection:
    """ViT-B/32's text tower (12 layers, width 512, 77 tokens, vocabulary 49,408) with seeded random weights;
    eager attention, as the checkpoints are loaded (the export then has a plain, constant causal mask)."""
    torch.manual_seed(seed)
    model = CLIPTextModelWithProjection(CLIPTextConfig())
    model.set_attn_implementation("eager")
    return model.eval()


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub instead of huggingface_hub's ~30 s of logged retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_pretrained(cls: type[PreTrainedModel], name: str, revision: str | None, offline: bool) -> Any:
    """(model, loading info: the weights the checkpoint lacked among them)."""
    return cls.from_pretrained(
        name,
        revision=revision or "main",
        attn_implementation="eager",
        local_files_only=offline,
        output_loading_info=True,
    )


def _where(source: str) -> tuple[str, Path]:
    local = Path(source).expanduser()
    kind = "local" if local.is_dir() else "hub"
    if kind == "hub" and (source.startswith((".", "/")) or source.count("/") > 1):
        raise SourceUnavailable(f"{source}: no such directory")
    return kind, local


def _load(cls: type[PreTrainedModel], source: str, revision: str | None) -> tuple[Any, dict[str, Any]]:
    """One tower of a hub id or a local dir, through the same from_pretrained path: a full CLIPModel
    checkpoint loads the tower asked for and skips the other. A hub id is tried from the local HF cache
    first, and only then over the network if the hub answers at all."""
    kind, local = _where(source)
    try:
        if kind == "local":
            model, info = _from_pretrained(cls, str(local), revision, offline=False)
        else:
            try:
                model, info = _from_pretrained(cls, source, revision, offline=True)
            except OSError:
                if not hub_reachable():
                    raise SourceUnavailable(
                        f"cannot load {source!r}: the HuggingFace Hub cannot be reached and the model is "
                        "not in the local HF cache (use a local save_pretrained dir or --source random-init)"
                    ) from None
                model, info = _from_pretrained(cls, source, revision, offline=False)
    except OSError as exc:  # the hub answered (or the dir exists), but this checkpoint cannot be read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceUnavailable(f"cannot load {source!r}: {first}") from exc
    return model.eval(), info


def load_text_source(source: str = DEFAULT_SOURCE, *, revision: str | None = None, seed: int = 0) -> LoadedText:
    """The text tower + text_projection (``CLIPModel.get_text_features``). A checkpoint without them (a
    ``CLIPVisionModelWithProjection``) raises ``NoTextTower`` instead of loading random text weights."""
    if source == RANDOM_INIT:
        model = random_text_init(seed)
    else:
        try:
            model, info = _load(CLIPTextModelWithProjection, source, revision)
        except (ValueError, KeyError, TypeError) as exc:  # a config of another kind (a vision-only checkpoint)
            raise NoTextTower(f"{source!r} has no text tower ({exc}); build image-only with --no-text") from exc
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise NoTextTower(
                f"{source!r} has no text tower ({len(missing)} weights missing, e.g. {missing[0]}); "
                "build image-only with --no-text"
            )
    return LoadedText(model, int(model.config.max_position_embeddings))


def load_source(source: str = DEFAULT_SOURCE, *, revision: str | None = None, seed: int = 0) -> LoadedModel:
    if source == RANDOM_INIT:
        return LoadedModel(random_init(seed), f"{RANDOM_MODEL_ID}-seed{seed}", "random-init", None, None)
    kind, local = _where(source)
    model, _ = _load(CLIPVisionModelWithProjection, source, revision)
    preprocessor = None
    if kind == "local" and (local / PREPROCESSOR_FILE).exists():
        preprocessor = json.loads((local / PREPROCESSOR_FILE).read_text())
    rev = revision or getattr(model.config, "_commit_hash", None)
    model_id = source if kind == "hub" else os.path.basename(str(local).rstrip("/"))
    name = getattr(model.config, "name_or_path", "") or ""
    if kind == "local" and name and not Path(name).is_dir():
        model_id = name  # keep the hub id a local checkpoint was saved from
    return LoadedModel(model, model_id, kind, rev, preprocessor)
