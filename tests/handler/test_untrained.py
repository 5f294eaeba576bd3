"""An untrained (random-init) or ungated model never serves by accident: INIT refuses it unless
ALLOW_UNTRAINED_MODEL says so, and then says it loudly; the image check refuses to build it into an image."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handler import runtime
from handler.settings import Settings
from layer.errors import ModelDirError
from layer.manifest import IMAGE, Manifest, TowerSpec

ROOT = Path(__file__).resolve().parents[2]


def manifest(*, random_init: bool = False, passed: bool = True) -> Manifest:
    tower = TowerSpec(IMAGE, "model.onnx", "model.fp32.onnx", "pixel_values", "image_embeds", 512,
                      accuracy_gate={"passed": passed})  # fmt: skip
    return Manifest(model_id="m", dim=512, towers={IMAGE: tower}, random_init=random_init)


def test_a_trained_gated_model_passes() -> None:
    assert runtime.untrained(manifest()) is None
    runtime.check_trained(Settings(), manifest())


@pytest.mark.parametrize(
    ("m", "why"),
    [(manifest(random_init=True), "random weights"), (manifest(passed=False), "did not pass its accuracy gate")],
)
def test_untrained_or_ungated_is_refused_unless_allowed(
    m: Manifest, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert why in (runtime.untrained(m) or "")
    with pytest.raises(ModelDirError, match="AllowUntrainedModel=true"):
        runtime.check_trained(Settings(), m)
    runtime.check_trained(dataclasses.replace(Settings(), allow_untrained=True), m)  # allowed: no error


def test_the_flag_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).allow_untrained is False
    assert Settings.from_env({"ALLOW_UNTRAINED_MODEL": "true"}).allow_untrained is True
    assert Settings.from_env({"ALLOW_UNTRAINED_MODEL": "false"}).allow_untrained is False


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
