"""infra/image/lambda_requirements.py: the image installs the project's run-time dependencies and the runtime
interface client, pinned in the committed lock, and nothing of the build (whether the lock is current:
tests/container/test_scanners.py, which resolves it with pip)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from infra.image.lambda_requirements import LOCK, ROOT, main, requirements

BUILD_ONLY = {"torch", "transformers", "onnx", "onnxscript", "scikit-learn", "fastembed", "moto", "aws-sam-cli"}


def name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_requirements_are_the_runtime_dependencies_and_the_runtime_client() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    got = requirements(ROOT / "pyproject.toml")
    assert got[:-1] == project["dependencies"]
    assert got[-1].startswith("awslambdaric") and got[-1] in project["optional-dependencies"]["dev"]
    assert not {name(r) for r in got} & BUILD_ONLY


def test_without_a_dev_range_the_client_is_unpinned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["numpy>=1.26"]\n')
    assert requirements(pyproject) == ["numpy>=1.26", "awslambdaric"]
    assert main(["lambda_requirements.py", str(pyproject)]) == 0
    assert capsys.readouterr().out == "numpy>=1.26\nawslambdaric\n"


def test_the_lock_pins_every_requirement_exactly_and_nothing_of_the_build() -> None:
    pins = dict(line.split("==") for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#"))
    assert all(re.fullmatch(r"[a-z0-9.\-]+", n) and re.fullmatch(r"[0-9][0-9a-z.+]*", v) for n, v in pins.items())
    assert {name(r) for r in requirements(ROOT / "pyproject.toml")} <= set(pins)
    assert not set(pins) & BUILD_ONLY
