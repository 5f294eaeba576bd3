"""The self-check (layer/selfcheck.py): each loaded tower embeds its manifest canary at load and compares it with
the build's fp32 vector and the build's int8 vector for this kernel path. A model file or a manifest that
computes other vectors fails it, with the tower named; it never raises."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layer.cpu import CpuInfo
from layer.embedder import Embedder
from layer.manifest import Manifest, decode_vector, encode_vector
from layer.selfcheck import FP32_AGREEMENT, SelfCheck, TowerCheck, reference_path, run_self_check

pytestmark = pytest.mark.slow

AGREEMENT = {"same_path": 0.99999, "same_arch": 0.99998, "arm64_other_path": 0.9995}
BLOCK = 4096


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Embedder:
    return Embedder.from_dir(model_dir, threads=1, text=True)


def linked_dir(model_dir: Path, out: Path, *, but: tuple[str, ...] = ()) -> Path:
    """``out`` with a link to every file of ``model_dir`` except ``but`` (to be written)."""
    out.mkdir(parents=True, exist_ok=True)
    for p in model_dir.iterdir():
        if p.name not in but:
            (out / p.name).symlink_to(p.resolve())
    return out


def with_manifest(model_dir: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads((model_dir / "manifest.json").read_text())
    edit(data)
    linked_dir(model_dir, out, but=("manifest.json",))
    (out / "manifest.json").write_text(json.dumps(data))
    return out


def nudged(encoded: str, cosine: float, seed: int = 0) -> str:
    """The vector turned away from itself to ``cosine``."""
    v = decode_vector(encoded).astype(np.float64)
    v /= np.linalg.norm(v)
    noise = np.random.default_rng(seed).standard_normal(v.shape)
    noise -= (noise @ v) * v
    noise /= np.linalg.norm(noise)
    return encode_vector(cosine * v + np.sqrt(1 - cosine**2) * noise)


def this_paths_reference(canary: dict[str, Any]) -> str:
    """The kernel path whose build vector the self-check compares with on this CPU."""
    found = reference_path(canary["int8"], CpuInfo.detect().kernel_path, canary["agreement"])
    assert found is not None, "the test model has no canary vector for this CPU's architecture"
    return found[0]


def overwritten_initializer(model_dir: Path, out: Path, pick: Callable[[Any], bool], fill: bytes) -> Path:
    """A copy of model.onnx where ``BLOCK`` bytes in the middle of the first initializer ``pick`` accepts (in
    graph order: the earliest layer) are ``fill`` repeated; the other files linked."""
    import onnx

    model = onnx.load(model_dir / "model.onnx", load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    name = next(x for node in model.graph.node for x in node.input if x in inits and pick(inits[x]))
    raw = inits[name].raw_data
    data = bytearray((model_dir / "model.onnx").read_bytes())
    at = data.find(raw[:256])
    assert at > 0 and data[at : at + len(raw)] == raw and len(raw) > 4 * BLOCK
    middle = at + len(raw) // 2
    data[middle : middle + BLOCK] = fill * (BLOCK // len(fill))
    linked_dir(model_dir, out, but=("model.onnx",))
    (out / "model.onnx").write_bytes(data)
    return out


def test_the_built_model_passes_on_this_cpu(engine: Embedder) -> None:
    check = engine.self_check
    assert check is not None and check.passed and check.reason == ""
    assert [t.tower for t in check.towers] == ["image", "text"]
    for t in check.towers:
        assert t.passed and t.reason is None and t.kernel_path == engine.cpu.kernel_path
        assert t.cosine_fp32 is not None and t.min_cosine is not None and t.cosine_fp32 >= t.min_cosine
        assert t.agreement is not None and t.agreement_threshold is not None
        assert t.agreement >= t.agreement_threshold


def test_the_check_reruns_the_same(engine: Embedder) -> None:
    again = run_self_check(engine)
    assert engine.self_check is not None and again.towers == engine.self_check.towers


def test_a_corrupted_weight_block_fails_the_image_tower(model_dir: Path, tmp_path: Path) -> None:
    """4 KiB of saturated values in the first large int8 weight: the model still loads and runs, its vectors
    stay close to fp32, but they are not the build's."""
    import onnx

    def int8_weight(t: Any) -> bool:
        return bool(t.data_type == onnx.TensorProto.INT8 and len(t.raw_data) >= 1 << 20)

    broken = Embedder.from_dir(overwritten_initializer(model_dir, tmp_path, int8_weight, b"\x80\x7f"), threads=1)
    check = broken.self_check
    assert check is not None and not check.passed
    (image,) = check.towers
    assert not image.passed and image.agreement is not None  # the canary ran: the session loaded
    assert image.cosine_fp32 is not None and image.cosine_fp32 >= 0.999  # what the gate alone would let through
    assert check.reason.startswith("image: ") and "differs from the build's" in check.reason


def test_a_nan_weight_fails_instead_of_comparing_false(model_dir: Path, tmp_path: Path) -> None:
    """NaN weights make NaN vectors, whose cosines compare False with any threshold: a failure, not a pass."""
    import onnx

    def float_weight(t: Any) -> bool:
        return bool(t.data_type == onnx.TensorProto.FLOAT and len(t.raw_data) >= 1 << 20)

    check = Embedder.from_dir(overwritten_initializer(model_dir, tmp_path, float_weight, b"\xff"), threads=1).self_check
    assert check is not None and not check.passed
    assert check.reason.startswith("image: ") and "nan" in check.reason


def test_a_canary_from_another_model_fails(model_dir: Path, tmp_path: Path) -> None:
    def swap(m: dict[str, Any]) -> None:
        image, text = m["towers"]["image"]["canary"], m["towers"]["text"]["canary"]
        image["fp32"], text["fp32"] = text["fp32"], image["fp32"]

    check = Embedder.from_dir(with_manifest(model_dir, tmp_path, swap), threads=1, text=True).self_check
    assert check is not None and not check.passed
    assert [t.passed for t in check.towers] == [False, False]
    assert check.reason.count("cosine to fp32") == 2 and "image: " in check.reason and "; text: " in check.reason


def test_an_int8_vector_off_by_a_little_fails_the_agreement_only(model_dir: Path, tmp_path: Path) -> None:
    def nudge(m: dict[str, Any]) -> None:
        canary = m["towers"]["image"]["canary"]
        path = this_paths_reference(canary)
        canary["int8"][path] = nudged(canary["int8"][path], 0.9999)

    check = Embedder.from_dir(with_manifest(model_dir, tmp_path, nudge), threads=1).self_check
    assert check is not None and not check.passed
    (image,) = check.towers
    assert image.agreement == pytest.approx(0.9999, abs=2e-5)
    assert "differs from the build's" in check.reason and "cosine to fp32" not in check.reason


def test_an_fp32_engine_checks_against_the_fp32_vector_only(model_dir: Path, tmp_path: Path) -> None:
    def nudge_int8(m: dict[str, Any]) -> None:
        for tower in m["towers"].values():
            tower["canary"]["int8"] = {p: nudged(v, 0.9) for p, v in tower["canary"]["int8"].items()}

    dir_a = with_manifest(model_dir, tmp_path / "a", nudge_int8)
    ignored = Embedder.from_dir(dir_a, precision="fp32", threads=1, text=True)
    assert ignored.self_check is not None and ignored.self_check.passed
    for t in ignored.self_check.towers:
        assert (t.min_cosine, t.agreement, t.kernel_path) == (FP32_AGREEMENT, None, None)
        assert t.cosine_fp32 is not None and t.cosine_fp32 >= FP32_AGREEMENT

    def nudge_fp32(m: dict[str, Any]) -> None:
        canary = m["towers"]["image"]["canary"]
        canary["fp32"] = nudged(canary["fp32"], 0.9999)  # within the int8 gate, not within float noise

    fp32 = Embedder.from_dir(with_manifest(model_dir, tmp_path / "b", nudge_fp32), precision="fp32", threads=1)
    assert fp32.self_check is not None and not fp32.self_check.passed
    assert fp32.self_check.reason.startswith("image: fp32 vector differs from the build's")


def test_a_canary_that_cannot_run_is_a_failure_not_an_exception(model_dir: Path, tmp_path: Path) -> None:
    def junk(m: dict[str, Any]) -> None:
        m["towers"]["image"]["canary"]["input"] = {"png_base64": base64.b64encode(b"not a png").decode()}

    check = Embedder.from_dir(with_manifest(model_dir, tmp_path, junk), threads=1).self_check
    assert check is not None and not check.passed
    assert check.reason.startswith("image: the canary did not run: NotAnImage")


def test_a_tower_without_a_canary_passes_unchecked(model_dir: Path, tmp_path: Path) -> None:
    def drop(m: dict[str, Any]) -> None:
        m["towers"]["text"]["canary"] = None

    check = Embedder.from_dir(with_manifest(model_dir, tmp_path, drop), threads=1, text=True).self_check
    assert check is not None and check.passed
    image, text = check.towers
    assert image.agreement is not None  # still checked
    assert (text.passed, text.cosine_fp32, text.reason) == (
        True,
        None,
        "the manifest has no canary for this tower: not checked",
    )


def test_from_dir_can_skip_the_check(model_dir: Path) -> None:
    assert Embedder.from_dir(model_dir, threads=1, self_check=False).self_check is None


@pytest.mark.parametrize(
    ("vectors", "path", "expected"),
    [
        ({"x86-avx2", "arm64-i8mm"}, "x86-avx2", ("x86-avx2", 0.99999)),  # this very path
        ({"x86-avx2", "arm64-i8mm"}, "x86-avx512-vnni", ("x86-avx2", 0.99998)),  # another x86 path
        ({"x86-avx512", "x86-avx2"}, "x86-amx", ("x86-avx2", 0.99998)),  # the first x86 path by name
        ({"x86-avx2", "arm64-i8mm", "arm64-dotprod"}, "arm64-neon", ("arm64-dotprod", 0.9995)),  # looser on arm64
        ({"arm64-i8mm", "arm64-dotprod"}, "arm64-dotprod", ("arm64-dotprod", 0.99999)),
        ({"arm64-i8mm"}, "x86-avx2", None),  # nothing of this architecture
        (set(), "x86-avx2", None),
    ],
)
def test_reference_path(vectors: set[str], path: str, expected: tuple[str, float] | None) -> None:
    assert reference_path(dict.fromkeys(vectors, "v"), path, AGREEMENT) == expected


def test_reference_path_defaults_to_float_noise_without_thresholds() -> None:
    assert reference_path({"x86-avx2": "v"}, "x86-avx2", {}) == ("x86-avx2", FP32_AGREEMENT)
    assert reference_path({"arm64-i8mm": "v"}, "arm64-neon", {}) == ("arm64-i8mm", FP32_AGREEMENT)


def test_the_report_names_the_failing_towers_and_leaves_out_what_was_not_measured() -> None:
    ok = TowerCheck("image", True, cosine_fp32=0.9999, min_cosine=0.999)
    bad = TowerCheck("text", False, reason="cosine to fp32 0.9 < the gate's 0.999")
    check = SelfCheck(passed=False, towers=(ok, bad), ms=1.5)
    assert check.reason == "text: cosine to fp32 0.9 < the gate's 0.999"
    assert check.to_dict() == {
        "passed": False,
        "towers": [
            {"tower": "image", "passed": True, "cosine_fp32": 0.9999, "min_cosine": 0.999},
            {"tower": "text", "passed": False, "reason": "cosine to fp32 0.9 < the gate's 0.999"},
        ],
        "ms": 1.5,
    }


def test_the_manifest_canaries_decode_to_unit_vectors_of_the_models_dimension(model_dir: Path) -> None:
    m = Manifest.read(model_dir)
    for t in m.towers.values():
        assert t.canary is not None
        for encoded in (t.canary.fp32, *t.canary.int8.values()):
            v = decode_vector(encoded)
            assert v.shape == (m.dim,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
