"""Run the Lambda image under the Runtime Interface Emulator (RIE) in Docker, on host networking.

Used by the container tests and the cold-start / cost measurements (infra/measure_*.py). The RIE binary
is the one the aws-sam-cli wheel ships; it is bind-mounted as the container's entrypoint, so the image
itself stays free of it (as on Lambda, where the service provides the runtime API). Both RIE addresses are
pinned to 127.0.0.1 (by default it would listen on 0.0.0.0:8080), and ``--network host`` lets the function
reach a moto server on the host's loopback.

    with ContainerFunction("clip-lambda:dev", "handler.api.lambda_handler", env={...}) as fn:
        result = fn.invoke(event)          # InvokeResult(payload, error, wall_ms)
        fn.reports()  # parsed REPORT lines: init_ms, duration_ms, ...

``memory_mb`` reproduces a Lambda memory size: ``--memory M`` and ``--cpus M/1769`` (Lambda gives one
vCPU's worth of CPU time per 1,769 MB) plus ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` so that the function sizes
its thread pool as it would on Lambda.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.net import free_port, wait_listening
from infra.local.rie import INVOKE_PATH, InvokeResult, post_invoke, rie_binary
from layer.settings import LAMBDA_MB_PER_VCPU

__all__ = [
    "OFFLINE_ENV",
    "ContainerFunction",
    "InvokeResult",
    "Report",
    "engine_env",
    "free_port",
    "image_model_dim",
    "rie_binary",
]

_REPORT = re.compile(r"^REPORT RequestId: (?P<id>\S+)(?P<rest>.*)$", re.MULTILINE)
_FIELD = re.compile(r"(Init Duration|Duration|Billed Duration|Memory Size|Max Memory Used): ([\d.]+)")
_INIT = re.compile(r"INIT REPORT\(durationMs: ([\d.]+)\)")
_RTDONE = re.compile(r"INVOKE RTDONE\(status: (\w+), produced bytes: \d+, duration: ([\d.]+)ms\)")


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


# A function that calls no AWS service (the API's inline images, INIT): if it did, loopback refuses at once.
# A random-init image is refused at INIT unless allowed; for a trained one the flag changes nothing.
OFFLINE_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "TABLE_NAME": "unused",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "ALLOW_UNTRAINED_MODEL": "true",
}


def image_model_dim(image: str, model_dir: str = "/opt/model") -> int:
    """The vector dimension of the model an image holds (its manifest): what a stack around the image sizes
    its vector index by, without a copy of the model directory on the host."""
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "cat", image, f"{model_dir}/manifest.json")
    return int(json.loads(out.stdout)["dim"])


@dataclass
class Report:
    request_id: str
    duration_ms: float
    billed_ms: float
    init_ms: float | None = None  # RIE's own INIT REPORT, attached to the invoke that triggered INIT
    invoke_ms: float | None = None  # RIE's INVOKE RTDONE duration: the handler alone, without INIT


@dataclass
class ContainerFunction:
    image: str
    command: str  # the handler, e.g. "handler.s3.lambda_handler"
    env: dict[str, str] = field(default_factory=dict)
    memory_mb: int | None = None  # None: no CPU/memory limit
    timeout_s: int = 300
    docker_args: tuple[str, ...] = ()  # e.g. ("--read-only", "--tmpfs", "/tmp"): Lambda's file system
    name: str = field(default_factory=lambda: f"clip-rie-{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def start(self) -> ContainerFunction:
        env = {
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            "AWS_LAMBDA_FUNCTION_NAME": self.command.split(".")[1] if "." in self.command else "function",
            **({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb)} if self.memory_mb else {}),
            **self.env,
        }
        args = ["run", "--detach", "--name", self.name, "--network", "host"]
        args += ["--volume", f"{rie_binary()}:/rie:ro", "--entrypoint", "/rie"]
        if self.memory_mb:
            args += ["--memory", f"{self.memory_mb}m", "--memory-swap", f"{self.memory_mb}m"]
            args += ["--cpus", f"{self.memory_mb / LAMBDA_MB_PER_VCPU:.3f}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        args += [
            *self.docker_args,
            self.image,
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{self.api_port}",
            "/opt/venv/bin/python",
            "-m",
            "awslambdaric",
            self.command,
        ]
        docker(*args)
        self.started_at = time.monotonic()
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 30) -> None:
        try:
            wait_listening(self.port, timeout, alive=self.running)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"container {self.name}: {exc}:\n{self.logs()}") from exc

    def running(self) -> bool:
        out = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def invoke(self, event: Any, timeout: float | None = None) -> InvokeResult:
        """POST the event; the same ``InvokeResult`` as ``LocalFunction.invoke`` (so the poller and the API
        front drive either)."""
        return post_invoke(self.url, event, timeout or self.timeout_s + 30)

    def logs(self) -> str:
        out = docker("logs", self.name, check=False)
        return out.stdout + out.stderr

    def reports(self) -> list[Report]:
        """The RIE's REPORT lines, with its INIT and INVOKE RTDONE figures attached (in order)."""
        text = self.logs()
        inits = [float(m) for m in _INIT.findall(text)]
        invokes = [float(d) for _, d in _RTDONE.findall(text)]
        reports = []
        for i, m in enumerate(_REPORT.finditer(text)):
            fields = dict(_FIELD.findall(m.group("rest")))
            reports.append(
                Report(
                    request_id=m.group("id"),
                    duration_ms=float(fields.get("Duration", "nan")),
                    billed_ms=float(fields.get("Billed Duration", "nan")),
                    init_ms=inits[0] if i == 0 and inits else None,
                    invoke_ms=invokes[i] if i < len(invokes) else None,
                )
            )
        return reports

    def stop(self) -> None:
        docker("rm", "--force", self.name, check=False)

    def __enter__(self) -> ContainerFunction:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def engine_env() -> dict[str, str]:
    """The environment for `docker` subprocesses: DOCKER_HOST from infra/ci/docker-engine.sh when unset."""
    env = dict(os.environ)
    if "DOCKER_HOST" not in env:
        # the folder infra/ci/docker-engine.sh uses (root-owned daemon state, not a scratch file)
        root = os.environ.get("CLIP_DOCKER_ROOT", "/var/tmp/clip-lambda-docker")  # noqa: S108
        sock = Path(root) / "docker.sock"
        if sock.exists():
            env["DOCKER_HOST"] = f"unix://{sock}"
    return env
