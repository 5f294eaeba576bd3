"""What zero-shot tags cost per image (bench/tags.py): the timing runs the engine's own Tagger, and its table."""

from __future__ import annotations

from bench.tags import markdown, tag_us


def test_the_tag_timing_runs_the_tagger_on_unit_label_vectors() -> None:
    assert tag_us(50, 16, runs=5) > 0
    assert tag_us(3, 8, runs=1, seed=1) > 0  # fewer labels than tags asked for: still one call


def test_the_table_gives_each_vocabulary_its_share_of_inference() -> None:
    result = {"runs": 2000, "inference_ms": 95.0, "model": "random-init/x",
              "rows": [{"labels": 407, "dim": 512, "us": 74.0, "share_of_inference": 0.00078},
                       {"labels": 5000, "dim": 768, "us": 950.5, "share_of_inference": 0.01}]}  # fmt: skip
    lines = markdown(result).splitlines()
    assert lines[0].startswith("Tags per image (median of 2000 calls, 1 thread)") and "(95.0 ms" in lines[0]
    assert lines[4:] == ["| 407 | 512 | 74.0 | 0.08% |", "| 5,000 | 768 | 950.5 | 1.00% |"]
