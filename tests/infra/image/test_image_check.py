"""infra/image/image_check.py, the Lambda image's last build step: the model files match their manifest, and
the functions' INIT refuses an untrained model unless the build allows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.image import image_check
from layer.manifest import IMAGE, Manifest, TowerSpec

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize("allow", [False, True])
def test_the_image_check_refuses_a_random_init_model_unless_allowed(model_dir: Path, allow: bool) -> None:
    """infra/image/image_check.py (the image's last build step) on the tests' random-init model."""
    assert Manifest.read(model_dir).random_init
    env = {**os.environ, "MODEL_DIR": str(model_dir), "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1"}  # fmt: skip
    env.pop("ALLOW_UNTRAINED_MODEL", None)
    if allow:
        env["ALLOW_UNTRAINED_MODEL"] = "true"
    proc = subprocess.run([sys.executable, "-m", "infra.image.image_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if allow:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "UNTRAINED MODEL allowed" in proc.stdout
    else:
        assert proc.returncode == 1 and "refusing to serve an untrained model" in proc.stderr


def test_a_model_directory_without_its_files_fails_the_build(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    assert image_check.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("image_check: FAILED: ")
    assert "lacks ['model.onnx', 'preprocessor_config.json', 'manifest.json']" in err


def test_a_file_that_is_not_the_manifests_fails_the_build_and_an_absent_one_does_not(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The image ships no model.fp32.onnx: a listed file that is absent is not checked; one present with other
    bytes than the build wrote fails the build before anything is imported."""
    (tmp_path / "model.onnx").write_bytes(b"not the built model")
    (tmp_path / "preprocessor_config.json").write_text("{}")
    tower = TowerSpec(IMAGE, "model.onnx", "model.fp32.onnx", "pixel_values", "image_embeds", 512)
    files = {"model.fp32.onnx": {"sha256": "0" * 64}, "model.onnx": {"sha256": "1" * 64}}
    Manifest(model_id="m", dim=512, towers={IMAGE: tower}, files=files).write(tmp_path)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    assert image_check.main() == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'model.onnx'} does not match the sha256 in manifest.json" in err
    assert "model.fp32.onnx" not in err
