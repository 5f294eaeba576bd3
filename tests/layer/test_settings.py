"""The engine's environment contract: every variable, its default, and what a bad value does."""

from __future__ import annotations

import pytest

from layer.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, Limits
from layer.settings import EngineSettings


def test_defaults_leave_every_choice_to_the_machine() -> None:
    s = EngineSettings.from_env({})
    assert s == EngineSettings()
    assert s.limits == Limits(DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE)
    assert (s.threads, s.spinning, s.graph_optimization, s.lambda_memory_mb) == (None, None, None, None)


def test_every_variable_is_read() -> None:
    s = EngineSettings.from_env(
        {
            "MAX_IMAGE_BYTES": "10",
            "MAX_IMAGE_PIXELS": "20",
            "MAX_IMAGE_SIDE": "30",
            "CLIP_LAMBDA_THREADS": "3",
            "CLIP_LAMBDA_SPINNING": "1",
            "CLIP_LAMBDA_GRAPH_OPT": "extended",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        }
    )
    assert s.limits == Limits(max_bytes=10, max_pixels=20, max_side=30)
    assert (s.threads, s.spinning, s.graph_optimization, s.lambda_memory_mb) == (3, True, "extended", 3008)
    assert EngineSettings.from_env({"CLIP_LAMBDA_SPINNING": "0"}).spinning is False


def test_one_thread_can_be_asked_for() -> None:
    assert EngineSettings.from_env({"CLIP_LAMBDA_THREADS": "1"}).threads == 1


@pytest.mark.parametrize("value", ["", "0", "-2", "two"])
def test_a_thread_count_that_is_not_positive_means_auto(value: str) -> None:
    assert EngineSettings.from_env({"CLIP_LAMBDA_THREADS": value}).threads is None


@pytest.mark.parametrize("value", ["", "yes", "true", "2"])
def test_spinning_takes_only_0_or_1(value: str) -> None:
    assert EngineSettings.from_env({"CLIP_LAMBDA_SPINNING": value}).spinning is None


def test_an_unparsable_limit_fails_loudly_at_init() -> None:
    with pytest.raises(ValueError):
        EngineSettings.from_env({"MAX_IMAGE_BYTES": "25MB"})
