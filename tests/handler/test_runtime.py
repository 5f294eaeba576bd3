"""The INIT singleton: Runtime.from_env builds the real engine, the clients with the retry policy and the sink
from Settings, and install/current swap it; an untrained (random-init) or ungated model never serves by
accident: INIT refuses it unless ALLOW_UNTRAINED_MODEL says so, and then says it loudly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from handler import runtime
from handler.settings import Settings
from handler.sinks.dynamodb import DynamoDBSink
from layer import Limits
from layer.errors import ModelDirError
from layer.manifest import IMAGE, Manifest, TowerSpec
from layer.settings import EngineSettings


@pytest.fixture
def built(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> runtime.Runtime:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    limits = Limits(max_bytes=1234, max_pixels=5678)
    engine = EngineSettings(limits=limits, threads=1)
    # The test model is random-init: INIT refuses it unless allowed (handler.runtime.check_trained).
    settings = Settings(model_dir=str(model_dir), table_name="items", engine=engine, allow_untrained=True)
    return runtime.Runtime.from_env(settings)


def test_from_env_builds_the_engine_clients_and_sink_from_settings(built: runtime.Runtime, model_dir: Path) -> None:
    assert built.engine.model_id == built.engine.manifest.model_id and built.engine.dim == 512
    assert built.settings.table_name == "items" and built.settings.limits.max_bytes == 1234
    assert built.engine.limits == Limits(max_bytes=1234, max_pixels=5678)  # the settings' limits, not the env's
    assert built.engine.session_settings.threads == 1  # type: ignore[attr-defined]
    assert isinstance(built.sink, DynamoDBSink) and built.sink.table_name == "items"
    for client in (built.s3, built.sink.client):
        config = client.meta.config
        assert config.retries == {"mode": "standard", "total_max_attempts": 4}  # botocore: 3 retries
        assert (config.connect_timeout, config.read_timeout) == (3, 15)
    assert built.s3.meta.service_model.service_name == "s3"
    assert built.sink.client.meta.service_model.service_name == "dynamodb"


def test_fp32_precision_loads_the_fp32_export(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = Settings(model_dir=str(model_dir), precision="fp32", table_name="t", allow_untrained=True)  # random-init
    rt = runtime.Runtime.from_env(settings)
    assert rt.engine.model_id.endswith("@fp32")


def test_current_builds_once_and_install_swaps(built: runtime.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(runtime.Runtime, "from_env", classmethod(lambda cls, text: calls.append(text) or built))
    monkeypatch.setattr(runtime, "_with_text", False)
    previous = runtime.install(None)
    try:
        assert runtime.current() is built and runtime.current() is built and calls == [False]
        assert runtime.install(None) is built
        runtime.require_text()  # the API function's import: its runtime loads the text tower
        assert runtime.current() is built and calls == [False, True]
    finally:
        runtime.install(previous)


# ------------------------------------------------- an untrained (random-init) or ungated model never serves by accident


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
