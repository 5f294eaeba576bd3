"""Load the vision tower + projection of a CLIP checkpoint: hub id, local ``save_pretrained`` dir, or random."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from layer.manifest import PREPROCESSOR_FILE
from layer.settings import DEFAULT_SOURCE

RANDOM_INIT = "random-init"
RANDOM_MODEL_ID = "random-init/clip-vit-base-patch32-untrained"


class SourceUnavailable(RuntimeError):
    """The checkpoint cannot be fetched (hub unreachable, no such repo) or read."""


@dataclass(frozen=True)
class LoadedModel:
    model: CLIPVisionModelWithProjection
    model_id: str
    source: str  # "hub" | "local" | "random-init"
    revision: str | None
    preprocessor: dict[str, object] | None  # preprocessor_config.json of the checkpoint, if it has one


def random_init(seed: int = 0) -> CLIPVisionModelWithProjection:
    """ViT-B/32 vision tower with seeded random weights (``CLIPVisionConfig()`` defaults are ViT-B/32)."""
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig())


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


def _from_pretrained(name: str, revision: str | None, offline: bool) -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection.from_pretrained(
        name, revision=revision or "main", attn_implementation="eager", local_files_only=offline
    )


def load_source(source: str = DEFAULT_SOURCE, *, revision: str | None = None, seed: int = 0) -> LoadedModel:
    if source == RANDOM_INIT:
        return LoadedModel(random_init(seed), f"{RANDOM_MODEL_ID}-seed{seed}", "random-init", None, None)
    local = Path(source).expanduser()
    kind = "local" if local.is_dir() else "hub"
    if kind == "hub" and (source.startswith((".", "/")) or source.count("/") > 1):
        raise SourceUnavailable(f"{source}: no such directory")
    try:
        # Same from_pretrained path for hub ids and local dirs; a full CLIPModel checkpoint loads its
        # vision tower + visual_projection, and the text tower is skipped. A hub id is tried from the
        # local HF cache first, and only then over the network if the hub answers at all.
        if kind == "local":
            model = _from_pretrained(str(local), revision, offline=False)
        else:
            try:
                model = _from_pretrained(source, revision, offline=True)
            except OSError:
                if not hub_reachable():
                    raise SourceUnavailable(
                        f"cannot load {source!r}: the HuggingFace Hub cannot be reached and the model is "
                        "not in the local HF cache (use a local save_pretrained dir or --source random-init)"
                    ) from None
                model = _from_pretrained(source, revision, offline=False)
    except OSError as exc:  # the hub answered (or the dir exists), but this checkpoint cannot be read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceUnavailable(f"cannot load {source!r}: {first}") from exc
    model.eval()
    preprocessor = None
    if kind == "local" and (local / PREPROCESSOR_FILE).exists():
        preprocessor = json.loads((local / PREPROCESSOR_FILE).read_text())
    rev = revision or getattr(model.config, "_commit_hash", None)
    model_id = source if kind == "hub" else os.path.basename(str(local).rstrip("/"))
    name = getattr(model.config, "name_or_path", "") or ""
    if kind == "local" and name and not Path(name).is_dir():
        model_id = name  # keep the hub id a local checkpoint was saved from
    return LoadedModel(model, model_id, kind, rev, preprocessor)
