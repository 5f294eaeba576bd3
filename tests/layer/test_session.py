"""Thread and spinning decisions from the CPU budget (Lambda memory size, cgroup quota, affinity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer import session as sess
from layer.session import CpuBudget, SessionSettings, session_options


@pytest.mark.parametrize(
    ("memory", "threads", "fractional"),
    [("1024", 1, True), ("1769", 1, True), ("3008", 2, True), ("3538", 2, False), ("10240", 2, False)],
)
def test_lambda_memory_sets_threads_on_two_visible_cpus(memory: str, threads: int, fractional: bool) -> None:
    budget = CpuBudget(visible=2, quota=None, lambda_vcpus=int(memory) / 1769)
    assert budget.threads == threads
    assert budget.fractional is fractional


def test_cgroup_quota_limits_threads(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert sess._cgroup_cpu_quota(tmp_path / "cpu.max") == 0.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert sess._cgroup_cpu_quota(tmp_path / "cpu.max") is None
    assert sess._cgroup_cpu_quota(tmp_path / "missing") is None
    assert CpuBudget(visible=4, quota=0.5, lambda_vcpus=None).threads == 1


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CLIP_LAMBDA_THREADS": "3", "CLIP_LAMBDA_SPINNING": "0", "CLIP_LAMBDA_GRAPH_OPT": "all"}
    s = SessionSettings.auto(environ=env)
    assert (s.threads, s.spinning, s.optimization) == (3, False, "all")
    assert SessionSettings.auto(threads=1, environ={}).threads == 1


def test_spinning_off_under_a_fractional_lambda_share() -> None:
    s = SessionSettings.auto(environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"})
    assert s.threads == 1 and s.spinning is False


def test_session_options_applied() -> None:
    so = session_options(SessionSettings(threads=2, spinning=False, optimization="extended"))
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.enable_cpu_mem_arena is False
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
