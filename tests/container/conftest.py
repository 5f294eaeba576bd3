"""Container-test fixtures: a working Docker engine, the debootstrap base image and the Lambda image.

Gating: a test marked ``container`` needs a Docker engine. Without one it is skipped with the reason,
unless ``CI=true`` or ``REQUIRE_CONTAINER_TESTS=1``, where it fails instead (CI must not go green by
skipping). The engine is found through DOCKER_HOST, else the socket of infra/ci/docker-engine.sh.
Unmarked tests here (test_template.py) never need Docker and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.container_rie import engine_env

ROOT = Path(__file__).resolve().parents[2]
# The model files the image needs are staged here, inside the build context (.dockerignore allows it).
STAGED_MODEL = ROOT / ".cache" / "image-model"
MODEL_FILES = ("model.onnx", "preprocessor_config.json", "manifest.json")
TEXT_FILES = ("text_model.onnx", "tokenizer.json", "labels.npy", "labels.json")  # the text tower and the tags
IMAGE = os.environ.get("CLIP_TEST_IMAGE", "clip-lambda:test")


def containers_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_CONTAINER_TESTS") == "1"


def _engine_problem() -> str | None:
    """None if a Docker engine answers, else why not."""
    if not shutil.which("docker"):
        return "no docker client on PATH (apt-get install docker.io)"
    env = engine_env()
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if proc.returncode != 0:
        where = env.get("DOCKER_HOST", "the default socket")
        return f"no Docker engine answers at {where} (start one: infra/ci/docker-engine.sh start)"
    os.environ["DOCKER_HOST"] = env.get("DOCKER_HOST", os.environ.get("DOCKER_HOST", ""))
    if not os.environ["DOCKER_HOST"]:
        del os.environ["DOCKER_HOST"]
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = _engine_problem()
    if problem is None:
        return
    if containers_required():
        pytest.fail(f"container tests are required (CI / REQUIRE_CONTAINER_TESTS) but {problem}")
    pytest.skip(f"container tests skipped: {problem}")


@pytest.fixture(autouse=True)
def _gate_container_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("container"):
        request.getfixturevalue("docker_engine")


def run(cmd: list[str], *, timeout: float, what: str, cwd: Path = ROOT) -> str:
    """Run a build step; on failure show its output's tail in the test report."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    """The local Debian base (infra/image/base-image.sh, cached in the engine between runs)."""
    out = run(["bash", str(ROOT / "infra" / "image" / "base-image.sh")], timeout=900, what="debootstrap base image")
    return out.strip().splitlines()[-1]


def stage_model(model_dir: Path) -> Path:
    """Hard-link (or copy) the image's model files into the build context; returns the context path."""
    STAGED_MODEL.mkdir(parents=True, exist_ok=True)
    for name in TEXT_FILES:
        if not (model_dir / name).exists():  # an image-only model: no stale text tower in the image
            (STAGED_MODEL / name).unlink(missing_ok=True)
    for name in (*MODEL_FILES, *(f for f in TEXT_FILES if (model_dir / f).exists())):
        src, dst = model_dir / name, STAGED_MODEL / name
        if dst.exists() and os.path.samefile(src, dst):
            continue
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return STAGED_MODEL.relative_to(ROOT)


@pytest.fixture(scope="session")
def image_build_args(base_image: str, model_dir: Path) -> dict[str, str]:
    """The build args of the test image: local base, model built by the tests' model_dir fixture (random-init:
    allowed explicitly, as a user would have to)."""
    return {"BASE_IMAGE": base_image, "MODEL_DIR": str(stage_model(model_dir)), "ALLOW_UNTRAINED_MODEL": "true"}


@pytest.fixture(scope="session")
def lambda_image(image_build_args: dict[str, str]) -> Iterator[str]:
    """infra/image/Dockerfile built once per session (layer cache makes rebuilds quick)."""
    cmd = ["docker", "build", "--network", "host", "--file", "infra/image/Dockerfile", "--tag", IMAGE]
    for key, value in image_build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    run([*cmd, "."], timeout=1800, what="docker build")
    yield IMAGE
