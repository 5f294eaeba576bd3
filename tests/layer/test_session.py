"""Thread and spinning decisions from the CPU budget (Lambda memory size, cgroup quota, affinity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer import session as sess
from layer.session import CpuBudget, SessionSettings, session_options
from layer.settings import EngineSettings


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
    s = SessionSettings.auto(EngineSettings.from_env(env))
    assert (s.threads, s.spinning, s.optimization) == (3, False, "all")
    assert SessionSettings.auto(EngineSettings.from_env(env), threads=1).threads == 1  # the argument wins
    assert SessionSettings.auto(EngineSettings(), optimization="extended").optimization == "extended"


def test_spinning_off_under_a_fractional_lambda_share() -> None:
    s = SessionSettings.auto(EngineSettings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}))
    assert s.threads == 1 and s.spinning is False


def test_session_options_applied() -> None:
    so = session_options(SessionSettings(threads=2, spinning=False, optimization="extended"))
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.enable_cpu_mem_arena is False and so.enable_mem_pattern is True
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.log_severity_level == 3  # errors only: a warning per session would flood INIT logs
    spinning = session_options(SessionSettings(threads=2, spinning=True, optimization="basic"))
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert SessionSettings.auto(EngineSettings()).optimization == "basic"


def test_the_budget_reads_the_cgroup_quota() -> None:
    assert CpuBudget.detect().quota == sess._cgroup_cpu_quota()


def test_a_container_cpu_quota_sets_threads_and_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker run --cpus=0.5`` (a cgroup quota of half a CPU): one thread, and no spinning to burn it."""
    monkeypatch.setattr(sess, "_cgroup_cpu_quota", lambda: 0.5)
    assert CpuBudget.detect().quota == 0.5
    s = SessionSettings.auto(EngineSettings())
    assert (s.threads, s.spinning) == (1, False)


@pytest.mark.slow
def test_the_session_is_made_for_the_cpu_provider_alone(model_dir: Path) -> None:
    """No provider warning and no fallback retry at each cold start: the CPU provider is asked for by name."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = sess.create_session(
            model_dir / "model.onnx", SessionSettings(threads=1, spinning=False, optimization="basic")
        )
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert [str(w.message) for w in caught if "provider" in str(w.message).lower()] == []


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_memory_does_not_grow_across_calls(model_dir: Path) -> None:
    """No arena high-water mark that creeps with input: after warm-up, 30 more images of mixed sizes and
    formats leave the resident set where it was (fastembed users report multi-GiB growth)."""
    from layer import Embedder
    from tests.imaging import encode, jpeg_12mp, resized_photo

    embedder = Embedder.from_dir(model_dir)
    images = [jpeg_12mp(), encode(resized_photo((640, 480))), encode(resized_photo((1920, 1080)), "JPEG")]
    for data in images * 2:
        embedder.embed_one(data)
    before = _rss_mib()
    for data in images * 10:
        embedder.embed_one(data)
    assert _rss_mib() - before < 16
