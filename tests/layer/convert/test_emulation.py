"""The emulated CPUs' processes (layer/convert/emulation.py): what each one is started with, and one build at a
time in the arm64 root (the emulation's proofs, on the built model: test_cpu_paths.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from layer.convert import emulation
from layer.convert.emulation import EmulationUnavailable, link_or_copy, x86_run


@pytest.mark.slow
def test_arm64_root_is_used_by_one_build_at_a_time(tmp_path: Path) -> None:
    """Two builds (or a build and the tests) on one machine share the root, its fake /proc/cpuinfo and its
    staged model: the second waits for the first (CI once failed copying QEMU over a running one)."""
    import threading
    import time

    from layer.convert.emulation import Arm64Root

    order: list[str] = []

    def second() -> None:
        with Arm64Root.locked(tmp_path / "root"):
            order.append("2")

    with Arm64Root.locked(tmp_path / "root"):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        order.append("1")
    waiter.join(timeout=5)
    assert order == ["1", "2"]


def test_an_emulated_x86_cpu_runs_this_interpreter_under_qemu_with_its_own_cpuinfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulation.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(emulation.shutil, "which", lambda name: f"/usr/bin/{name}")
    run = x86_run("EPYC-Milan", "flags\t\t: avx2\n", tmp_path)
    prefix = tmp_path / "prefix"
    assert run.argv == ["/usr/bin/qemu-x86_64-static", "-L", str(prefix), "-cpu", "EPYC-Milan", sys.executable, "-m"]
    assert (prefix / "proc" / "cpuinfo").read_text() == "flags\t\t: avx2\n"  # what onnxruntime and layer.cpu read
    for name in ("possible", "present", "online"):
        assert (prefix / "sys" / "devices" / "system" / "cpu" / name).read_text() == "0-1\n"
    assert run.stage == tmp_path / "stage" and run.stage.is_dir() and run.stage_in_guest == str(run.stage)
    assert run.env["PYTHONPATH"] == str(Path(emulation.layer.__file__).parent.parent)  # the engine of this tree
    assert run.env["OMP_NUM_THREADS"] == "1" and run.env["HOME"] == str(tmp_path)


def test_a_machine_that_cannot_emulate_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulation.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(emulation.shutil, "which", lambda name: None)
    with pytest.raises(EmulationUnavailable, match=r"qemu-x86_64-static not found \(apt-get install"):
        x86_run("EPYC-Milan", "", tmp_path)
    monkeypatch.setattr(emulation.platform, "machine", lambda: "aarch64")
    with pytest.raises(EmulationUnavailable, match="x86-64 host"):
        x86_run("EPYC-Milan", "", tmp_path)


def test_the_cache_follows_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIP_LAMBDA_EMULATION_CACHE", str(tmp_path / "emu"))
    assert emulation.cache_dir() == tmp_path / "emu"
    assert emulation.Arm64Root().path == tmp_path / "emu" / f"arm64-{emulation.DEBIAN_SUITE}"
    monkeypatch.delenv("CLIP_LAMBDA_EMULATION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert emulation.cache_dir() == tmp_path / "xdg" / "clip-lambda" / "emulation"


def test_link_or_copy_replaces_what_is_there(tmp_path: Path) -> None:
    src, dst = tmp_path / "model.onnx", tmp_path / "stage" / "model.onnx"
    src.write_bytes(b"new")
    dst.parent.mkdir()
    dst.write_bytes(b"a stale copy")
    link_or_copy(src, dst)
    assert dst.read_bytes() == b"new"
