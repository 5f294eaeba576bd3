"""Print the Lambda image's pip requirements: the project's runtime dependencies plus awslambdaric.

Run inside the image build (``python3 infra/lambda_requirements.py > requirements.txt``), so that
pyproject.toml stays the one place where run-time dependencies are declared: the image installs exactly
``[project].dependencies`` (no build, bench or dev extras: no torch, no transformers) and the runtime
interface client, whose version range is taken from the ``dev`` extra where the local stack uses it too.
Standard library only: it runs on the bare base image before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    ric = [r for r in project.get("optional-dependencies", {}).get("dev", []) if r.startswith("awslambdaric")]
    reqs.extend(ric or ["awslambdaric"])
    return reqs


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("pyproject.toml")
    print("\n".join(requirements(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
