"""The mutation-testing report (``make mutation``): mutmut's results per file, and every survivor with its diff
and the reason it survives (``bench/mutation-survivors.toml``: equivalent, or accepted and why). A reason is
given per mutant (``[survivors]``, by name) or per kind of change (``[[patterns]]``: a regular expression
that the mutant's diff must match, for whole families such as error-message wording); a survivor that
neither names is reported as NOT REVIEWED.

    .venv-mutation/bin/python bench/mutation_report.py > bench/results/mutation.md

Runs in the mutation venv from the project root, after ``mutmut run`` (its results live under mutants/).
"""

from __future__ import annotations

import re
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


def reason_for(name: str, change: str, reasons: dict[str, str], patterns: list[dict[str, str]]) -> str:
    if name in reasons:
        return reasons[name]
    for p in patterns:
        if re.search(p["diff"], change, re.M) and re.search(p.get("mutant", ""), name):
            return p["reason"]
    return "NOT REVIEWED"


def main() -> int:
    statuses = results()
    config = tomllib.loads(REASONS.read_text()) if REASONS.exists() else {}
    reasons: dict[str, str] = config.get("survivors", {})
    patterns: list[dict[str, str]] = config.get("patterns", [])
    by_file: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses.items():
        by_file[name.split(".x")[0].split(".x_")[0].rsplit(".", 1)[0]][status] += 1
    total = Counter(statuses.values())
    checked = sum(total.values()) - total["not checked"] - total["skipped"]
    killed = total["killed"]
    detected = killed + total["timeout"]  # a mutant that makes the suite hang is caught as surely as a failure
    lines = [
        "# Mutation testing (mutmut 3.8, fast suite: tests/handler + the engine's fast tests)",
        "",
        f"Mutants: {sum(total.values())}; checked {checked}; detected {detected} "
        f"(**{detected / max(checked, 1):.1%}** of those checked: killed {killed} "
        f"({killed / max(checked, 1):.1%}), timed out {total['timeout']}); survived {total['survived']}; "
        f"no tests {total['no tests']}; not checked {total['not checked']}.",
        "",
        "| module | mutants | killed | survived | timeout | no tests |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for module, c in sorted(by_file.items()):
        lines.append(
            f"| {module} | {sum(c.values())} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['no tests']} |"
        )
    survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    changes = {name: diff(name) for name in survivors}
    given = {name: reason_for(name, changes[name], reasons, patterns) for name in survivors}
    lines += ["", f"## Survivors ({len(survivors)}) by reason", ""]
    for reason, n in Counter(given.values()).most_common():
        lines.append(f"- {n}: {reason}")
    lines += ["", "## Every survivor", ""]
    for name in survivors:
        lines += [f"- `{name}` ({statuses[name]}): {given[name]}", "", "```diff", changes[name], "```", ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
