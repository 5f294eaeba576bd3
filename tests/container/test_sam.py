"""`sam build` of template.yaml and `sam local invoke` of the API function on the sample events.

The template is built as written, except for its Docker build args: no registry is reachable here, so
BASE_IMAGE is the local debootstrap base, and MODEL_DIR is the tests' model (template.yaml's default is
build/model from `make model`). The copy lives in a temporary folder, with DockerContext pointing back at
the repository. The Docker layer cache makes this build reuse the session's image build.

`sam local invoke` runs the function on the default bridge network; events/env.json points every AWS
endpoint (and STS) at the container's own loopback, where nothing listens, so nothing can reach AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from samcli.yamlhelper import yaml_dump, yaml_parse

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAM = str(Path(sys.executable).parent / "sam")


def sam_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SAM_CLI_TELEMETRY="0",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        # SAM itself may ask STS who we are: loopback, one attempt, instead of ~9 s of retries to AWS.
        AWS_ENDPOINT_URL_STS="http://127.0.0.1:9",
        AWS_MAX_ATTEMPTS="1",
    )
    return env


def sam(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAM, *args], cwd=cwd, env=sam_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def built_template(tmp_path_factory: pytest.TempPathFactory, image_build_args: dict[str, str]) -> Path:
    work = tmp_path_factory.mktemp("sam")
    template = yaml_parse((ROOT / "template.yaml").read_text())
    for name in ("S3Function", "ApiFunction", "ModelCheckFunction"):
        meta = template["Resources"][name]["Metadata"]
        meta["DockerContext"] = str(ROOT)
        meta["DockerBuildArgs"] = {**meta["DockerBuildArgs"], **image_build_args}
    (work / "template.yaml").write_text(yaml_dump(template))
    proc = sam("build", "--template-file", "template.yaml", cwd=work, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    built = work / ".aws-sam" / "build" / "template.yaml"
    assert built.exists()
    resources = yaml_parse(built.read_text())["Resources"]
    uris = {
        name: resources[name]["Properties"]["ImageUri"] for name in ("S3Function", "ApiFunction", "ModelCheckFunction")
    }
    # Both functions come from the one Dockerfile; their images are the same layers.
    ids = {
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", uri],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for uri in uris.values()
    }
    assert len(ids) == 1, uris
    return built


def local_invoke(built: Path, event: str) -> tuple[dict[str, Any], str]:
    proc = sam(
        "local",
        "invoke",
        "ApiFunction",
        "--template-file",
        str(built),
        "--event",
        str(EVENTS / event),
        "--env-vars",
        str(EVENTS / "env.json"),
        "--skip-pull-image",
        cwd=built.parent,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    # stdout carries the function's response (the last JSON line); logs go to stderr.
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (proc.stdout + proc.stderr)[-5000:]
    return json.loads(lines[-1]), proc.stderr


def test_sam_local_invoke_api_returns_a_unit_vector(built_template: Path) -> None:
    response, logs = local_invoke(built_template, "api-embed.json")
    assert response["statusCode"] == 200, (response, logs[-3000:])
    body = json.loads(response["body"])
    vec = np.asarray(body["embedding"], dtype=np.float64)
    assert vec.shape == (512,) and body["dim"] == 512
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4


def test_sam_local_invoke_malformed_api_event_is_a_400(built_template: Path) -> None:
    response, logs = local_invoke(built_template, "api-malformed.json")
    assert response["statusCode"] == 400, (response, logs[-3000:])
    assert json.loads(response["body"])["error"]["code"] == "invalid_base64"
