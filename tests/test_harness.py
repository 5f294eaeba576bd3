"""The test harness itself: the model cache key, CI's refusal to skip, random test order."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests import conftest


def test_the_model_cache_key_follows_every_layer_file_and_library(tmp_path: Path) -> None:
    (tmp_path / "layer" / "convert").mkdir(parents=True)
    (tmp_path / "layer" / "decode.py").write_text("A = 1\n")
    (tmp_path / "layer" / "convert" / "gate.py").write_text("B = 1\n")
    versions = {lib: "1.0" for lib in conftest.BUILD_LIBRARIES}
    key = conftest.build_key(tmp_path, "random-init", versions=versions)
    assert key == conftest.build_key(tmp_path, "random-init", versions=dict(versions))  # stable
    assert key != conftest.build_key(tmp_path, "checkpoint", versions=versions)
    for lib in conftest.BUILD_LIBRARIES:
        assert key != conftest.build_key(tmp_path, "random-init", versions={**versions, lib: "1.1"}), lib
    for name in ("layer/decode.py", "layer/convert/gate.py"):  # engine code too: the gate runs it
        path = tmp_path / name
        path.write_text(path.read_text() + "# changed\n")
        assert conftest.build_key(tmp_path, "random-init", versions=versions) != key, name
        key = conftest.build_key(tmp_path, "random-init", versions=versions)


def test_a_missing_dependency_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUIRE_CROSS_CPU", raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ModuleNotFoundError):
        conftest.require("no_such_module_clip_lambda")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        conftest.require("no_such_module_clip_lambda")
    assert conftest.require("json").dumps([]) == "[]"


def test_tests_run_in_random_order(request: pytest.FixtureRequest) -> None:
    """pytest-randomly is installed and on, unless a run turns it off by name (the mutation run does)."""
    assert importlib.util.find_spec("pytest_randomly") is not None
    disabled = "no:randomly" in " ".join(request.config.invocation_params.args)
    assert disabled or request.config.pluginmanager.hasplugin("randomly")
