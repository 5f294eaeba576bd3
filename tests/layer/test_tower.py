"""One tower's session (layer/tower.py): which file it loads, the session options it gets from the CPU and the
probe, and one input per run (the L2 normalization: tests/layer/test_embedding.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from layer.cpu import CpuInfo, Probe, int8_tuning
from layer.errors import ModelDirError
from layer.manifest import Manifest
from layer.settings import EngineSettings
from layer.tower import TowerSession, l2_normalize
from tests.layer.towers import load, token_ids

pytestmark = pytest.mark.slow

HASWELL = CpuInfo(arch="x86_64", model="Intel Haswell", flags=frozenset({"avx2"}))
GRAVITON3 = CpuInfo(arch="aarch64", model="Arm Neoverse-V1 (Graviton3)", flags=frozenset({"asimddp", "i8mm"}))
EXACT = Probe(u8s8_exact=True, reencoded_exact=None, ms=1.0)
SATURATING = Probe(u8s8_exact=False, reencoded_exact=True, ms=1.0)


def test_an_int8_tower_loads_its_int8_file_tuned_by_the_probe(model_dir: Path, manifest: Manifest) -> None:
    spec = manifest.image
    for probe, config, level in ((SATURATING, {"session.x64quantprecision": "1"}, "extended"), (EXACT, {}, "basic")):
        tower = load(model_dir, spec, cpu=HASWELL, probe=probe)
        assert (tower.path, tower.precision) == (model_dir / spec.file, "int8")
        assert (dict(tower.settings.config), tower.settings.optimization) == (config, level)
        for key, value in config.items():  # reached onnxruntime
            assert tower.session.get_session_options().get_session_config_entry(key) == value


def test_without_a_probe_the_flags_decide(model_dir: Path, manifest: Manifest) -> None:
    tower = load(model_dir, manifest.image, cpu=HASWELL, probe=None)
    assert tower.settings.config == int8_tuning(HASWELL, manifest.image.quantization).config
    assert tower.settings.config == (("session.x64quantprecision", "1"),)


def test_an_arm64_cpu_keeps_kleidiai_off(model_dir: Path, manifest: Manifest) -> None:
    tower = load(model_dir, manifest.image, cpu=GRAVITON3, probe=SATURATING)
    assert dict(tower.settings.config) == {"mlas.disable_kleidiai": "1"} and tower.settings.optimization == "basic"


def test_fp32_precision_loads_the_fp32_export_with_every_optimization(model_dir: Path, manifest: Manifest) -> None:
    tower = load(model_dir, manifest.image, precision="fp32", cpu=HASWELL, probe=SATURATING)
    assert (tower.path, tower.precision) == (model_dir / manifest.image.fp32_file, "fp32")
    assert (tower.settings.config, tower.settings.optimization) == ((), "all")


def test_an_fp32_tower_is_run_as_fp32_even_when_int8_is_asked(model_dir: Path, manifest: Manifest) -> None:
    fp32_build = dataclasses.replace(manifest.image, precision="fp32", file=manifest.image.fp32_file)
    tower = load(model_dir, fp32_build, precision="int8", cpu=HASWELL, probe=SATURATING)
    assert (tower.path.name, tower.precision) == (manifest.image.fp32_file, "fp32")
    assert (tower.settings.config, tower.settings.optimization) == ((), "all")


def test_a_missing_file_is_a_model_dir_error(tmp_path: Path, manifest: Manifest) -> None:
    with pytest.raises(ModelDirError, match=rf"{manifest.image.file} not found"):
        load(tmp_path, manifest.image)
    with pytest.raises(ModelDirError, match=rf"{manifest.image.fp32_file} not found"):
        load(tmp_path, manifest.image, precision="fp32")


def test_threads_come_from_the_argument_else_the_engine_settings(model_dir: Path, manifest: Manifest) -> None:
    assert load(model_dir, manifest.image, threads=2).settings.threads == 2
    engine = EngineSettings(threads=1, spinning=False, graph_optimization="disabled")
    tower = load(model_dir, manifest.image, threads=None, engine=engine)
    assert (tower.settings.threads, tower.settings.spinning, tower.settings.optimization) == (1, False, "disabled")
    assert tower.session.get_session_options().intra_op_num_threads == 1


def test_inputs_run_one_at_a_time(text: TowerSession) -> None:
    """A row's vector is the same bits alone or in a batch, in any order."""
    ids = token_ids([320], [320, 1929], [1125, 539, 320, 2368], [320] * 40)
    batch = text.features(ids)
    assert batch.shape == (4, 512) and batch.dtype == np.float32
    for i in range(4):
        assert np.array_equal(text.features(ids[i : i + 1])[0], batch[i])
    assert np.array_equal(text.features(ids[::-1]), batch[::-1])
    assert len({row.tobytes() for row in batch}) == 4


def test_embed_is_the_normalized_features(text: TowerSession) -> None:
    ids = token_ids([320, 1929], [1125])
    unit, norms = text.embed(ids)
    raw = text.features(ids)
    np.testing.assert_allclose(unit * norms[:, None], raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(unit, l2_normalize(raw)[0]) and np.array_equal(norms, l2_normalize(raw)[1])


def test_dim_is_the_models_output_and_the_report_names_the_session(text: TowerSession, model_dir: Path) -> None:
    wrong = dataclasses.replace(text.spec, dim=768)
    assert load(model_dir, wrong).dim == 512 == text.dim  # the model's output, whatever the spec says
    report = text.report()
    assert report == {
        "precision": "int8",
        "file": text.spec.file,
        "session_config": dict(text.settings.config),
        "graph_optimization": text.settings.optimization,
    }
