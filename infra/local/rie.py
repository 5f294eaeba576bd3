"""A function running under the Lambda Runtime Interface Emulator with ``awslambdaric``, on the host.

    with LocalFunction("handler.s3.lambda_handler", env=stack.function_env(MODEL_DIR=...)) as fn:
        result = fn.invoke(event)          # InvokeResult(payload, error, wall_ms)

The RIE binary is the one aws-sam-cli ships (``samcli/local/rapid/aws-lambda-rie-<arch>``). Both of its
addresses are pinned to 127.0.0.1 (its default is 0.0.0.0:8080). It runs ``python -m awslambdaric
<handler>`` from the repository root, like the container's ``CMD``. It serves one invoke at a time, so
``invoke`` holds a lock; run several ``LocalFunction``s for concurrency.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.net import HOST, free_port, on_free_ports, wait_listening

ROOT = Path(__file__).resolve().parents[2]
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def rie_binary() -> Path:
    import samcli

    arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    path = Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pip install aws-sam-cli")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


@dataclass(frozen=True)
class InvokeResult:
    payload: Any  # the handler's return value (or the RIE's error object)
    error: bool  # the function raised or timed out (Lambda's X-Amz-Function-Error)
    wall_ms: float


def post_invoke(url: str, event: Any, timeout: float) -> InvokeResult:
    """POST one event to an RIE invoke URL (on the host or in a container): payload, failure flag, wall ms.
    A function error is the ``X-Amz-Function-Error`` header, an HTTP error, or an ``errorType`` payload."""
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")  # noqa: S310 - loopback
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback http
            body, error = resp.read(), bool(resp.headers.get("X-Amz-Function-Error"))
    except urllib.error.HTTPError as exc:
        body, error = exc.read(), True
    wall_ms = (time.perf_counter() - t0) * 1e3
    try:
        payload = json.loads(body) if body else None
    except json.JSONDecodeError:
        payload = body.decode(errors="replace")
    if isinstance(payload, dict) and {"errorType", "errorMessage"} <= payload.keys():
        error = True
    return InvokeResult(payload=payload, error=error, wall_ms=wall_ms)


@dataclass
class LocalFunction:
    handler: str
    env: dict[str, str] = field(default_factory=dict)
    name: str = "function"
    timeout_s: int = 120  # the function timeout the RIE enforces
    memory_mb: int = 3008
    port: int = 0
    api_port: int = 0
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{INVOKE_PATH}"

    def start(self) -> LocalFunction:
        if self.port and self.api_port:  # requested (or a restart): one try on the same ports
            return self._start_once()

        def once() -> LocalFunction:
            self.port, self.api_port = free_port(), free_port()
            return self._start_once()

        return on_free_ports(once)

    def _start_once(self) -> LocalFunction:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix=f"rie-{self.name}-")) / "function.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", tempfile.gettempdir()),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
            "POWERTOOLS_SERVICE_NAME": self.name,
            **self.env,
        }
        cmd = [
            str(rie_binary()),
            "--runtime-interface-emulator-address", f"{HOST}:{self.port}",
            "--runtime-api-address", f"{HOST}:{self.api_port}",
            sys.executable, "-m", "awslambdaric", self.handler,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            wait_listening(self.port, timeout=30, alive=self.running)
            if not self.running():  # another server answered on the port ours could not bind
                raise RuntimeError(f"the RIE could not bind {HOST}:{self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def invoke(self, event: Any, timeout: float | None = None) -> InvokeResult:
        """One synchronous invoke (the first one includes INIT: the model load)."""
        with self._lock:
            return post_invoke(self.url, event, timeout or self.timeout_s + 30)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the RIE and the runtime it started (our own group)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> LocalFunction:
        return self if self._proc else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
