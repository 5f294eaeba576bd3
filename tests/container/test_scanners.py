"""Security scanners in `make test`: checkov on template.yaml, bandit on the product code, pip-audit on the
image's locked runtime requirements. They live in their own venv (`make scanners`, infra/ci/scanners.txt)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCAN_BIN = ROOT / ".venv-scan" / "bin"
LOCK = ROOT / "infra" / "image" / "lambda-requirements.lock"


def scanner(name: str) -> str:
    path = SCAN_BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `make scanners` (make test does)")
    return str(path)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_checkov_template_has_no_failed_check_and_every_skip_says_why() -> None:
    proc = run(scanner("checkov"), "-f", "template.yaml", "--framework", "cloudformation", "-o", "json")
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] >= 30 and summary["parsing_errors"] == 0
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]


def test_bandit_finds_nothing_in_the_product_code() -> None:
    proc = run(scanner("bandit"), "-q", "-c", "pyproject.toml", "-r", "handler", "layer", "-f", "json")
    report = json.loads(proc.stdout)
    issues = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert issues == []
    assert report["metrics"]["_totals"]["loc"] > 2000  # it did scan the code


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_image_lock_is_current() -> None:
    """Every package of the image is pinned at the version the suite runs with; every runtime dependency of
    pyproject.toml is in it; nothing of the build (torch, transformers, onnx) is. (`make lock` rewrites it.)"""
    lock = _pins(LOCK.read_text())
    tested = _pins((ROOT / "constraints.txt").read_text())
    assert {name: (version, tested.get(name)) for name, version in lock.items() if tested.get(name) != version} == {}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [re.split(r"[\[<>=!~ ]", r, maxsplit=1)[0].lower() for r in project["dependencies"]]
    assert set(direct) | {"awslambdaric"} <= set(lock)
    assert not {"torch", "transformers", "onnx", "onnxscript"} & set(lock)


def test_pip_audit_locked_runtime_requirements() -> None:
    """0 known vulnerabilities in the image's packages. pip-audit asks PyPI's JSON API (or OSV); where
    neither answers, as on machines that reach only a package mirror, every package comes back "not found"
    and nothing was audited: that is a skip with the reason, never a pass."""
    proc = run(scanner("pip-audit"), "-r", str(LOCK), "--no-deps", "--disable-pip", "-s", "pypi", "-f", "json")
    report = json.loads(proc.stdout or "{}")
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    if deps and not audited:
        pytest.skip(f"pip-audit could not reach a vulnerability service: {deps[0]['skip_reason']}")
    assert len(audited) == len(_pins(LOCK.read_text()))
    vulnerable = {d["name"]: [v["id"] for v in d["vulns"]] for d in audited if d["vulns"]}
    assert vulnerable == {}
