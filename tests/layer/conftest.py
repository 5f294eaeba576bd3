"""Fixtures of the engine's tests on one tower of the suite's model (tests/layer/test_tower.py,
test_run_tower.py): its manifest and its text tower's session, loaded once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer.manifest import Manifest
from layer.tower import TowerSession
from tests.layer.towers import load


@pytest.fixture(scope="module")
def manifest(model_dir: Path) -> Manifest:
    return Manifest.read(model_dir)


@pytest.fixture(scope="module")
def text(model_dir: Path, manifest: Manifest) -> TowerSession:
    assert manifest.text is not None
    return load(model_dir, manifest.text)
