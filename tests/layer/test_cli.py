"""``clip-lambda embed`` output contract: one JSON object per line, per-image errors, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layer import Embedder
from tests.imaging import encode, photo_bytes, resized_photo

pytestmark = pytest.mark.slow


def _embed(model_dir: Path, *paths: Path) -> tuple[int, list[dict[str, object]]]:
    proc = subprocess.run(
        [sys.executable, "-m", "layer", "embed", "--model", str(model_dir), "--format", "jsonl", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_embed_jsonl(model_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "china.jpg", tmp_path / "wide.png"
    a.write_bytes(photo_bytes()["china.jpg"])
    b.write_bytes(encode(resized_photo((500, 200))))
    rc, rows = _embed(model_dir, a, b)
    assert rc == 0 and [r["path"] for r in rows] == [str(a), str(b)]
    for row, size in zip(rows, [(640, 427), (500, 200)], strict=True):
        assert set(row) == {"path", "embedding", "norm", "model", "width", "height"}
        vec = np.asarray(row["embedding"], dtype=np.float32)
        assert vec.shape == (512,) and abs(np.linalg.norm(vec) - 1) < 1e-5
        assert (row["width"], row["height"]) == size and float(row["norm"]) > 0  # type: ignore[arg-type]
    same = Embedder.from_dir(model_dir).embed_one(a.read_bytes())
    assert float(np.asarray(rows[0]["embedding"]) @ same.vector) > 0.999999
    assert rows[0]["model"] == same.model


def test_embed_reports_errors_per_image_and_fails(model_dir: Path, tmp_path: Path) -> None:
    good, bad = tmp_path / "ok.jpg", tmp_path / "notes.txt"
    good.write_bytes(photo_bytes()["flower.jpg"])
    bad.write_text("not an image")
    rc, rows = _embed(model_dir, bad, good, tmp_path / "missing.png")
    assert rc == 1
    assert rows[0] == {"path": str(bad), "error": rows[0]["error"]}
    assert rows[0]["error"]["code"] == "not_an_image"  # type: ignore[index]
    assert "embedding" in rows[1]
    assert rows[2]["error"]["code"] == "unreadable_file"  # type: ignore[index]
