"""The benchmark's contenders (bench/contenders.py): each name loads its own implementation, behind the same two
calls (the contenders themselves run in tests/bench/test_run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import contenders
from bench.contenders import CONTENDERS, load


def test_each_name_loads_its_contender(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, tuple[Any, ...]]] = []

    def maker(cls: str) -> Any:
        def make(*args: Any) -> str:
            made.append((cls, args))
            return cls

        return make

    for cls in ("Ours", "FastEmbed", "HFTorch"):
        monkeypatch.setattr(contenders, cls, maker(cls))
    model = Path("build/model")
    assert [load(name, model, 2) for name in CONTENDERS] == ["Ours", "Ours", "FastEmbed", "HFTorch"]
    assert made == [("Ours", (model, "int8", 2)), ("Ours", (model, "fp32", 2)), ("FastEmbed", (model, 2)),
                    ("HFTorch", (model, 2))]  # fmt: skip


def test_an_unknown_contender_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown contender 'onnx-int4'; choose from"):
        load("onnx-int4", Path("m"), 1)
    assert set(CONTENDERS) == {"ours-int8", "ours-fp32", "fastembed-fp32", "hf-torch"}
