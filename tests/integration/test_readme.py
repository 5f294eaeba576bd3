"""The README's commands for a deployed stack, run as written against the local stack in its deployed shape
(``infra.local.deployed``: the template's outputs, IAM auth on the API, the AWS CLI and awscurl from pip,
the backfill's Step Functions calls): a README example that does not run is not in the README."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.deployed import DeployedStack
from layer.manifest import Manifest
from tests.imaging import photo_bytes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MARK = "### README COMMAND "


def readme_commands(kind: str = "deployed-stack") -> list[str]:
    """The commands of the README's ```bash <kind>``` blocks, a backslash-continued line joined to the next."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(rf"```bash {kind}\n(.*?)```", text, re.S)
    assert blocks, f"the README has no ```bash {kind}``` block"
    commands: list[str] = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return commands


def run_readme(commands: list[str], env: dict[str, str], cwd: Path) -> list[tuple[str, int, str]]:
    """Every command in one bash session (they share variables), each one's exit status and output apart."""
    script = "\n".join(
        f"echo '{MARK}{i}'\n{cmd}\nrc=$?\necho\necho \"{MARK}{i} rc=$rc\"" for i, cmd in enumerate(commands)
    )
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    results = []
    for i, cmd in enumerate(commands):
        match = re.search(rf"^{MARK}{i}\n(.*?)^{MARK}{i} rc=(\d+)$", proc.stdout, re.S | re.M)
        assert match, f"command {i} did not finish: {cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        results.append((cmd, int(match[2]), match[1]))
    return results


@pytest.fixture(scope="module")
def deployed(model_dir: Path) -> Iterator[DeployedStack]:
    with DeployedStack(model_dir).start() as stack:
        yield stack


def test_every_readme_command_runs_against_a_stack_of_the_deployed_shape(
    deployed: DeployedStack, model_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "photo.jpg").write_bytes(photo_bytes()["flower.jpg"])
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "model").symlink_to(model_dir)
    env = deployed.env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results = run_readme(readme_commands(), env, tmp_path)
    failed = [(cmd, rc, out[-1500:]) for cmd, rc, out in results if rc != 0]
    assert not failed, failed
    out = {cmd.split("$API/")[-1].split('"')[0] if "$API/" in cmd else cmd.split()[0]: o for cmd, _, o in results}
    dim = Manifest.read(model_dir).dim
    embedded = json.loads(out["embed"])
    assert embedded["dim"] == dim and len(embedded["embedding"]) == dim
    texts = json.loads(out["embed/text"])
    assert [len(r["embedding"]) for r in texts["results"]] == [dim, dim]
    searches = [json.loads(o) for cmd, _, o in results if "$API/search" in cmd]
    assert [r["key"] for r in searches[0]["results"]] == ["holiday/photo.jpg"]  # the prefix holds one image
    assert searches[1]["results"][0]["key"] == "holiday/photo.jpg" and searches[1]["results"][0]["score"] > 0.9999
    model = json.loads(out["model"])
    assert model["dim"] == dim and model["self_check"]["passed"] is True
    rows = [json.loads(line) for line in out["clip-lambda"].splitlines() if line.startswith("{")]
    backfill = rows[-1]
    assert backfill["status"] == "SUCCEEDED" and backfill["total"] == 1  # the one object, a duplicate by now
    search_rows = [json.loads(line) for cmd, _, o in results if cmd.startswith("clip-lambda search")
                   for line in o.splitlines() if line.startswith("{")]  # fmt: skip
    assert search_rows and search_rows[0]["key"] == "holiday/photo.jpg"
    [item] = [json.loads(o) for cmd, _, o in results if cmd.startswith("clip-lambda item")]
    assert item["pk"].endswith("/holiday/photo.jpg") and "embedding" not in item  # a lean item (ItemVector=auto)
    assert item["vector_from"] == "index" and len(item["vector"]) == dim


def test_the_api_refuses_unsigned_requests_as_iam_auth_does(deployed: DeployedStack) -> None:
    assert deployed.api is not None
    try:
        urllib.request.urlopen(f"{deployed.api.url}/model", timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 403 and json.loads(exc.read()) == {"message": "Forbidden"}
    else:
        pytest.fail("an unsigned request was let through")


def test_the_readme_names_only_outputs_and_parameters_the_template_has() -> None:
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"OutputKey=='\$1'|out (\w+)\)", readme)) - {""}
    assert named <= set(template["Outputs"]), named - set(template["Outputs"])
    table = readme[readme.index("| parameter | default | what |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `(\w+)` \| `?([^`|]*?)`? \|", table, re.M)
    params = template["Parameters"]
    assert {name for name, _ in rows} == set(params), "the README's parameter table is not the template's"
    for name, default in rows:
        want = str(params[name].get("Default", ""))
        assert default == (want or "empty"), (name, default, want)
