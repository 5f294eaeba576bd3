"""The Lambda image under the RIE in Docker (infra/local/container_rie.py), without Docker: the ``docker run``
it issues (a Lambda memory size's CPU and memory, loopback-only RIE) and the REPORT lines it reads back
(the image itself runs in tests/container/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.local import container_rie
from infra.local.container_rie import ContainerFunction, Report, engine_env

LOGS = """\
START RequestId: a1 Version: $LATEST
INIT REPORT(durationMs: 812.25)
INVOKE RTDONE(status: success, produced bytes: 0, duration: 95.50ms)
END RequestId: a1
REPORT RequestId: a1\tInit Duration: 812.25 ms\tDuration: 96.04 ms\tBilled Duration: 97 ms\tMemory Size: 1769 MB
START RequestId: b2 Version: $LATEST
INVOKE RTDONE(status: success, produced bytes: 0, duration: 40.00ms)
END RequestId: b2
REPORT RequestId: b2\tDuration: 40.61 ms\tBilled Duration: 41 ms\tMemory Size: 1769 MB\tMax Memory Used: 400 MB
REPORT RequestId: c3\tDuration: 1.00 ms\tBilled Duration: 1 ms
"""


def test_reports_carry_init_on_the_first_invoke_and_each_handlers_own_time() -> None:
    fn = ContainerFunction("clip-lambda:test", "handler.api.lambda_handler")
    fn.logs = lambda: LOGS  # type: ignore[method-assign]
    assert fn.reports() == [
        Report("a1", duration_ms=96.04, billed_ms=97.0, init_ms=812.25, invoke_ms=95.5),
        Report("b2", duration_ms=40.61, billed_ms=41.0, init_ms=None, invoke_ms=40.0),
        Report("c3", duration_ms=1.0, billed_ms=1.0, init_ms=None, invoke_ms=None),  # no RTDONE line for it
    ]


def test_a_memory_size_becomes_its_cpu_share_and_the_rie_listens_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def docker(*args: str, **_: Any) -> Any:
        calls.append(args)

    monkeypatch.setattr(container_rie, "docker", docker)
    monkeypatch.setattr(container_rie, "rie_binary", lambda: Path("/opt/rie"))
    monkeypatch.setattr(ContainerFunction, "_wait_listening", lambda self, timeout=30: None)
    fn = ContainerFunction("img:1", "handler.s3.lambda_handler", env={"TABLE_NAME": "t"}, memory_mb=3538,
                           docker_args=("--read-only",), port=9001, api_port=9002, name="c1")  # fmt: skip
    with fn:
        assert fn.url == "http://127.0.0.1:9001/2015-03-31/functions/function/invocations"
    run, rm = calls
    assert rm == ("rm", "--force", "c1")
    args = list(run)
    assert args[:6] == ["run", "--detach", "--name", "c1", "--network", "host"]
    assert args[args.index("--cpus") + 1] == "2.000" and args[args.index("--memory") + 1] == "3538m"
    assert args[args.index("--memory-swap") + 1] == "3538m"  # no swap beyond the memory size, as on Lambda
    envs = {args[i + 1] for i, a in enumerate(args) if a == "--env"}
    assert {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=3538", "AWS_LAMBDA_FUNCTION_NAME=s3", "TABLE_NAME=t"} <= envs
    assert "--volume" in args and "/opt/rie:/rie:ro" in args and args[args.index("--entrypoint") + 1] == "/rie"
    tail = args[args.index("img:1") - 1 :]
    assert tail == ["--read-only", "img:1", "--runtime-interface-emulator-address", "127.0.0.1:9001",
                    "--runtime-api-address", "127.0.0.1:9002", "/opt/venv/bin/python", "-m", "awslambdaric",
                    "handler.s3.lambda_handler"]  # fmt: skip


def test_without_a_memory_size_the_container_is_not_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(container_rie, "docker", lambda *args, **_: calls.append(args))
    monkeypatch.setattr(container_rie, "rie_binary", lambda: Path("/opt/rie"))
    monkeypatch.setattr(ContainerFunction, "_wait_listening", lambda self, timeout=30: None)
    ContainerFunction("img:1", "handler.api.lambda_handler", port=1, api_port=2).start()
    assert not {"--cpus", "--memory"} & set(calls[0])
    assert not any(a.startswith("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") for a in calls[0])


def test_the_docker_engine_of_the_ci_script_is_used_when_none_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("CLIP_DOCKER_ROOT", str(tmp_path))
    assert "DOCKER_HOST" not in engine_env()  # no socket there
    (tmp_path / "docker.sock").touch()
    assert engine_env()["DOCKER_HOST"] == f"unix://{tmp_path / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    assert engine_env()["DOCKER_HOST"] == "tcp://elsewhere:2375"  # a given engine is kept
