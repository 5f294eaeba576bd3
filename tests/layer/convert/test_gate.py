"""The accuracy gate (layer/convert/gate.py): each input's int8-to-fp32 cosine, the worst one named, and a
failure that says what to do."""

from __future__ import annotations

import numpy as np
import pytest

from layer.convert.gate import DEFAULT_MIN_COSINE, GateFailed, judge


@pytest.mark.slow
def test_the_gate_result_says_what_its_inputs_were() -> None:
    from layer.convert.gate import judge

    int8 = np.eye(2, dtype=np.float32)
    fp32 = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    result = judge(["a", "b"], int8, fp32, 0.999, "texts")
    d = result.to_dict()
    assert (d["unit"], d["n_inputs"], d["worst"], d["passed"]) == ("texts", 2, "b", False)
    assert d["per_input"] == {"a": 1.0, "b": 0.8} and d["cosine_min"] == 0.8


def test_the_threshold_is_inclusive_and_the_worst_input_named() -> None:
    fp32 = np.eye(3, dtype=np.float32)
    int8 = fp32.copy()
    int8[1] = [0.0, 0.999, np.sqrt(1 - 0.999**2)]  # cosine 0.999 exactly: on the threshold
    result = judge(["a", "b", "c"], int8, fp32)
    assert result.threshold == DEFAULT_MIN_COSINE == 0.999
    assert result.passed and result.worst == "b" and result.cosine_min == 0.999 and result.unit == "images"
    assert result.cosine_mean == round((1 + 0.999 + 1) / 3, 6)
    assert not judge(["a", "b", "c"], int8, fp32, threshold=0.9995).passed


def test_a_failed_gate_names_the_tower_the_worst_input_and_what_to_do() -> None:
    result = judge(["x.jpg", "y.jpg"], np.array([[1.0, 0.0], [0.6, 0.8]]), np.eye(2), 0.999)
    exc = GateFailed(result, "image")
    assert str(exc).startswith("image accuracy gate failed: int8 vs fp32 cosine min 0.80000 (worst: y.jpg)")
    assert "< threshold 0.999" in str(exc) and "--no-recover" in str(exc) and exc.result is result
    assert str(GateFailed(result, hint="try fp32")).endswith("< threshold 0.999; try fp32")
