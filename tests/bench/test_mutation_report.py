"""The mutation-testing report (bench/mutation_report.py): each survivor gets its reason, by name first, then by
the first pattern its diff (and name) match; the committed reasons are valid patterns."""

from __future__ import annotations

import re
import tomllib

from bench.mutation_report import REASONS, reason_for

PATTERNS = [
    {"diff": r"^\+.*logger\.", "reason": "a log line"},
    {"diff": r"^\+\s+return f?\"", "mutant": "malformed_event", "reason": "a message's text"},
    {"diff": r"^\+", "reason": "anything else"},
]


def test_a_named_survivor_takes_its_own_reason_first() -> None:
    reasons = {"handler.api.x_embed__mutmut_3": "equivalent: the same status"}
    assert reason_for("handler.api.x_embed__mutmut_3", '+    logger.info("x")', reasons, PATTERNS) == (
        "equivalent: the same status"
    )


def test_patterns_match_the_diff_line_by_line_and_optionally_the_name() -> None:
    assert reason_for("m.x_f__mutmut_1", '-    x = 1\n+    logger.info("y")', {}, PATTERNS) == "a log line"
    change = '+        return "XXbadXX"'
    assert reason_for("handler.events.x_malformed_event__mutmut_2", change, {}, PATTERNS) == "a message's text"
    assert reason_for("handler.events.x_parse__mutmut_2", change, {}, PATTERNS) == "anything else"  # another name
    assert reason_for("m.x_f__mutmut_1", "-    x = 1", {}, PATTERNS[:2]) == "NOT REVIEWED"


def test_the_committed_reasons_compile_and_each_says_why() -> None:
    config = tomllib.loads(REASONS.read_text())
    assert set(config) <= {"patterns", "survivors"}
    for p in config.get("patterns", []):
        re.compile(p["diff"], re.M)
        re.compile(p.get("mutant", ""))
        assert set(p) <= {"diff", "mutant", "reason"} and p["reason"].strip(), p
    assert all(isinstance(v, str) and v for v in config.get("survivors", {}).values())
