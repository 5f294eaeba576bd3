"""``manifest.json`` of a model directory: what was built, from what, and how well it passed the gate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from layer.errors import ModelDirError

MODEL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"
PREPROCESSOR_FILE = "preprocessor_config.json"
MANIFEST_FILE = "manifest.json"
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "image_embeds"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelDirError(f"{path} not found: build one with `clip-lambda build-model --out DIR`") from exc
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from exc
    return data


def verify_files(model_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Check every file's sha256 against the manifest (done at image build time, not at each cold start)."""
    for name, meta in manifest.get("files", {}).items():
        path = Path(model_dir) / name
        if not path.exists():
            raise ModelDirError(f"{path} listed in the manifest is missing")
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise ModelDirError(f"{path}: sha256 {digest} does not match the manifest ({meta['sha256']})")
