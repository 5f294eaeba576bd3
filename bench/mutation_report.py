"""The mutation-testing report (``make mutation``): mutmut's results per file, and every survivor with its diff
and the reason it survives (``bench/mutation-survivors.toml``: equivalent, or accepted and why).

    .venv-mutation/bin/python bench/mutation_report.py > bench/results/mutation.md

Runs in the mutation venv from the project root, after ``mutmut run`` (its results live under mutants/).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REASONS = Path(__file__).resolve().parent / "mutation-survivors.toml"


def results() -> dict[str, str]:
    """mutant name → status, from ``mutmut results --all``."""
    out = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), "results", "--all", "true"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    statuses = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def diff(name: str) -> str:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([mutmut, "show", name], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    return "\n".join(
        line for line in out.splitlines()[1:] if line.startswith(("+", "-")) and line[:3] not in ("+++", "---")
    )


def main() -> int:
    statuses = results()
    reasons: dict[str, str] = tomllib.loads(REASONS.read_text()).get("survivors", {}) if REASONS.exists() else {}
    by_file: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses.items():
        by_file[name.split(".x")[0].split(".x_")[0].rsplit(".", 1)[0]][status] += 1
    total = Counter(statuses.values())
    checked = sum(total.values()) - total["not checked"] - total["skipped"]
    killed = total["killed"]
    lines = [
        "# Mutation testing (mutmut 3.8, fast suite: tests/handler + the engine's fast tests)",
        "",
        f"Mutants: {sum(total.values())}; checked {checked}; killed {killed} "
        f"(**{killed / max(checked, 1):.1%}**); survived {total['survived']}; timeout {total['timeout']}; "
        f"no tests {total['no tests']}.",
        "",
        "| module | mutants | killed | survived | timeout | no tests |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for module, c in sorted(by_file.items()):
        lines.append(
            f"| {module} | {sum(c.values())} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['no tests']} |"
        )
    survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    lines += ["", f"## Survivors ({len(survivors)})", ""]
    for name in survivors:
        reason = reasons.get(name, "NOT REVIEWED")
        lines += [f"- `{name}` ({statuses[name]}): {reason}", "", "```diff", diff(name), "```", ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
