"""Shared fixtures. Model builds are session-scoped and cached under .cache/test-models/ (git-ignored),
keyed by the build code and library versions, so a run builds each model at most once and later runs
reuse it."""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CLIP_LAMBDA_TEST_CACHE", ROOT / ".cache" / "test-models"))


def cross_cpu_required() -> bool:
    """Under CI (or REQUIRE_CROSS_CPU=1) the emulated CPU paths must run; elsewhere a machine without QEMU
    or root builds with ``--cross-cpu auto`` and the tests that need the emulated paths skip with why."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_CROSS_CPU") == "1"


# The libraries whose versions change what a build writes (export, quantization, calibration photos, decode,
# the text tower's tokenizer.json).
BUILD_LIBRARIES = ("torch", "transformers", "onnx", "onnxruntime", "numpy", "pillow", "scikit-learn", "tokenizers")


def build_key(root: Path, *parts: str, versions: dict[str, str] | None = None) -> str:
    """Changes whenever the code a build runs changes (all of ``layer``: the gate runs the engine, in emulated
    CPUs too) or a library it runs on does."""
    from importlib.metadata import version

    versions = versions if versions is not None else {lib: version(lib) for lib in BUILD_LIBRARIES}
    h = hashlib.sha256()
    for path in sorted((root / "layer").rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    for part in (*parts, *(f"{k}=={v}" for k, v in sorted(versions.items()))):
        h.update(part.encode())
    return h.hexdigest()[:12]


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds across concurrent pytest processes sharing the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def cached_build(name: str, source: str, cross_cpu: Literal["auto", "required", "off"], **options: Any) -> Path:
    """``build-model`` of ``source`` once per cache key (``options``: more ``BuildOptions`` fields; no tags'
    vocabulary unless ``labels`` names one: embedding a few hundred prompts is build time most tests do not
    need)."""
    from layer.convert.pipeline import BuildOptions, build_model

    options.setdefault("labels", None)
    extra = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    if isinstance(options["labels"], Path):  # the vocabulary's content, not only its path
        extra += "," + hashlib.sha256(options["labels"].read_bytes()).hexdigest()[:12]
    out = CACHE / f"{name}-{build_key(ROOT, name, source, cross_cpu, extra)}"
    with _locked(name):
        if not (out / "manifest.json").exists():
            opts = BuildOptions(source=source, out=out, cross_cpu=cross_cpu, **options)
            build_model(opts, log=lambda m: print(m, flush=True))
    return out


def cross_cpu_mode() -> Literal["required", "auto"]:
    return "required" if cross_cpu_required() else "auto"


# The suite's model's tags vocabulary: a few dozen labels (the default list of a few hundred is the same code
# path, at ten times the build time).
TEST_LABELS = Path(__file__).with_name("labels.txt")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """A built int8 model directory from the ``random-init`` source (also holds model.fp32.onnx), gated at the
    default threshold on every CPU path this machine can emulate (all emulatable ones under CI). Recovered
    builds have their own tests (tests/layer/convert/test_recovery.py); the stricter gate on this model,
    which recovers both towers, is a full build of its own: bench/recovery.py.
    ``CLIP_LAMBDA_TEST_MODEL_DIR`` names an existing one instead (mutation testing: the mutated code must not
    change the cache key)."""
    given = os.environ.get("CLIP_LAMBDA_TEST_MODEL_DIR")
    if given:
        return Path(given)
    return cached_build("random-init", "random-init", cross_cpu_mode(), labels=TEST_LABELS)


@pytest.fixture(scope="session")
def clip_checkpoint() -> Path:
    """A full ``CLIPModel`` (seeded random weights, ViT-B/32 config) written with ``save_pretrained``:
    the stand-in for openai/clip-vit-base-patch32, which the offline hub cannot provide."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out = CACHE / f"clip-checkpoint-{build_key(ROOT, 'checkpoint')}"
    with _locked("clip-checkpoint"):
        if not (out / "config.json").exists():
            torch.manual_seed(1234)
            CLIPModel(CLIPConfig()).eval().save_pretrained(out)
            CLIPImageProcessor().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def checkpoint_model_dir(clip_checkpoint: Path) -> Path:
    """The model directory built from ``clip_checkpoint`` through the local save_pretrained path."""
    return cached_build("checkpoint", str(clip_checkpoint), "off")  # fidelity to HF; CPU paths: model_dir


def require(module: str) -> Any:
    """``pytest.importorskip`` that fails instead under CI: a missing test dependency must not turn a
    fidelity suite into a silent skip where it is supposed to run."""
    if cross_cpu_required():  # CI=true or REQUIRE_CROSS_CPU=1
        return importlib.import_module(module)
    return pytest.importorskip(module)
