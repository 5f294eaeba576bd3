"""``clip-lambda build-model`` (layer/convert/cli.py): its options reach the build, and every refusal is one
``error:`` line and an exit status that says which kind (3: source, 4: gate, 5: emulation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layer.convert.quantize import GATHER, QuantSettings
from layer.convert.text_tower import text_quant

CLI = [sys.executable, "-m", "layer.convert"]


@pytest.mark.slow
def test_unreachable_hub_is_one_clear_error_line(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [*CLI, "build-model", "--source", "openai/clip-vit-base-patch32", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot be reached" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_missing_local_dir_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CLI, "build-model", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3 and "no such directory" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_cli_gives_the_text_tower_the_vision_format(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--weight-bits`` and ``--per-tensor`` reach both towers; the ``--text-quant-*`` options the text one."""
    from layer.convert import cli, pipeline

    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "build_model", lambda opts, log=None: seen.append(opts))
    argv = ["build-model", "--source", "random-init", "--out", str(tmp_path / "m"), "--weight-bits", "7"]
    assert cli.main([*argv, "--per-tensor", "--text-quant-exclude-nodes", "a,b"]) == 0
    [opts] = seen
    assert opts.quant == QuantSettings(per_channel=False, reduce_range=True)
    assert opts.text_quant == text_quant(opts.quant, nodes_to_exclude=("a", "b"))
    assert opts.text is True and opts.text_quant.op_types == ("MatMul", GATHER)


def failing(*excs: BaseException) -> Any:
    """A build_model that raises ``excs`` in turn (then succeeds), recording the options of each call."""
    calls: list[Any] = []

    def build_model(opts: Any, log: Any = None) -> None:
        calls.append(opts.source)
        if len(calls) <= len(excs):
            raise excs[len(calls) - 1]

    build_model.calls = calls  # type: ignore[attr-defined]
    return build_model


def refusals() -> list[tuple[BaseException, int]]:
    from layer.convert.bpe_vocab import VocabUnavailable
    from layer.convert.cpu_paths import CpuPathsFailed
    from layer.convert.emulation import EmulationUnavailable
    from layer.convert.gate import GateFailed, judge
    from layer.convert.source import NoTextTower, SourceUnavailable

    gate = judge(["a"], np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]))
    return [
        (SourceUnavailable("the hub cannot be reached"), 3),
        (NoTextTower("a vision-only checkpoint"), 3),
        (VocabUnavailable("cannot fetch open-clip-torch"), 3),
        (GateFailed(gate, "image"), 4),
        (CpuPathsFailed([]), 4),
        (EmulationUnavailable("qemu-aarch64-static not found"), 5),
    ]


def test_every_refusal_is_one_error_line_and_its_exit_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from layer.convert import cli, pipeline

    for exc, status in refusals():
        monkeypatch.setattr(pipeline, "build_model", failing(exc))
        assert cli.main(["build-model", "--out", str(tmp_path / "m")]) == status, exc
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and str(exc) in err[0], err
    other = RuntimeError("a bug, not a refusal")
    monkeypatch.setattr(pipeline, "build_model", failing(other))
    with pytest.raises(RuntimeError, match="a bug"):  # a traceback, not an exit status that hides it
        cli.main(["build-model", "--out", str(tmp_path / "m")])


def test_a_fallback_source_is_built_only_when_the_source_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from layer.convert import cli, pipeline
    from layer.convert.source import NoTextTower, SourceUnavailable

    argv = ["build-model", "--source", "org/model", "--fallback-source", "random-init", "--out", str(tmp_path / "m")]
    build = failing(SourceUnavailable("org/model cannot be reached"))
    monkeypatch.setattr(pipeline, "build_model", build)
    assert cli.main(argv) == 0 and build.calls == ["org/model", "random-init"]
    assert "FALLING BACK TO --source random-init: AN UNTRAINED MODEL" in capsys.readouterr().err
    build = failing(NoTextTower("vision only"))  # not a reason to fall back
    monkeypatch.setattr(pipeline, "build_model", build)
    assert cli.main(argv) == 3 and build.calls == ["org/model"]
    build = failing(SourceUnavailable("org/model cannot be reached"))  # without a fallback: refused
    monkeypatch.setattr(pipeline, "build_model", build)
    assert cli.main(argv[:3] + argv[5:]) == 3 and build.calls == ["org/model"]
