"""What each INIT lever is worth (bench/init_levers.py): every lever compares two probes that exist and
differ, each probe is Python that runs, and the table (the measurement itself runs against the image in
tests/container/test_measurements.py)."""

from __future__ import annotations

import ast

from bench.init_levers import LEVERS, PROBES, markdown


def test_each_lever_is_the_difference_of_two_probes_of_the_same_run() -> None:
    for lever, without, with_ in LEVERS:
        assert without in PROBES and with_ in PROBES and without != with_, lever
    assert {p for _, a, b in LEVERS for p in (a, b)} == set(PROBES)  # no probe measured for nothing


def test_every_probe_is_python_that_prints_its_milliseconds() -> None:
    for name, (env, code) in PROBES.items():
        ast.parse(code)  # the probe runs with `python -c` in the image
        assert code.startswith("import time, json\nt0 = time.perf_counter()\n"), name
        assert "'ms'" in code or '"ms"' in code, name
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()), name
    assert PROBES["import handler.s3, tracing on"][0] == {"POWERTOOLS_TRACE_DISABLED": "false"}


def test_the_table() -> None:
    probes = {name: {"ms": 100.0, "warm_inference_ms": 30.0} for name in PROBES}
    probes["ONNX session, pre-packing off"]["warm_inference_ms"] = 41.25
    lever = {"lever": "botocore instead of boto3", "without_ms": 480.4, "with_ms": 210.0, "gain_ms": 270.4}
    result = {"memory_mb": 1024, "runs": 5, "loadavg": "0.5", "levers": [lever], "probes": probes,
              "importtime_ms": [("handler.s3", 812.0)]}  # fmt: skip
    text = markdown(result)
    assert "`docker run --cpus 0.58 --memory 1024m` (Lambda 1024 MB), median of 5 fresh containers" in text
    assert "| botocore instead of boto3 | 480 | 210 | 270 |" in text
    assert "pre-packing on / off: 30.0 / 41.2 ms per image" in text and text.endswith("- handler.s3: 812\n")
