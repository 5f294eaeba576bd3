"""The shell helpers (.ci/run, infra/**/*.sh): syntax, shellcheck, and the engine script's contract."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / ".ci" / "run", *sorted((ROOT / "infra").rglob("*.sh"))]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_is_strict_bash(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_clean(script: Path) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (apt-get install shellcheck; .ci/run installs it)")
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout


def test_docker_engine_script_contract(tmp_path: Path) -> None:
    script = str(ROOT / "infra" / "ci" / "docker-engine.sh")
    env = {"PATH": "/usr/bin:/bin", "CLIP_DOCKER_ROOT": str(tmp_path)}
    out = subprocess.run(["bash", script, "env"], env=env, capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == f"export DOCKER_HOST=unix://{tmp_path}/docker.sock"
    bad = subprocess.run(["bash", script, "bogus"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage" in bad.stderr
    # stop without a daemon: nothing to do, stale files removed, success
    (tmp_path / "docker.pid").write_text("999999\n")
    (tmp_path / "docker.sock").write_text("")
    stop = subprocess.run(["bash", script, "stop"], env=env, capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0, stop.stderr
    assert not (tmp_path / "docker.pid").exists() and not (tmp_path / "docker.sock").exists()
