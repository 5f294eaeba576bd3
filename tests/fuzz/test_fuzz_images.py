"""Image fuzzing in CI sizes: ≥ 10,000 mutated images through the decoder and preprocessing, 3,000 through
the API handler, 300 through the int8 engine; fixed seeds, each run in its own process (tests/fuzz/run.py).

Every case must end in a vector or a documented error code (no other exception, no status ≥ 500), and the
process must stay under 1,024 MiB (the S3 function's default memory) however hostile the input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PEAK_BOUND_MIB = 1024
DOCUMENTED = {"ok", "empty_image", "image_too_large", "too_many_pixels", "not_an_image", "corrupt_image"}


def fuzz(target: str, examples: int, seed: int, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "tests.fuzz.run", "--target", target, "--examples", str(examples), "--seed", str(seed)]
    proc = subprocess.run([*cmd, *extra], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in result.items() if k != "failure"}))
    assert result["failure"] is None, result["failure"]
    assert proc.returncode == 0
    return result


@pytest.mark.parametrize(("target", "examples", "seed"), [("pixels", 10_000, 1), ("api", 3_000, 2)])
def test_fuzzed_images_end_in_a_vector_or_a_documented_error(target: str, examples: int, seed: int) -> None:
    result = fuzz(target, examples, seed)
    assert result["cases"] == examples
    assert set(result["outcomes"]) <= DOCUMENTED
    assert result["outcomes"].get("ok", 0) > examples // 20  # the corpus is not all garbage
    assert result["peak_rss_mib"] <= PEAK_BOUND_MIB


def test_fuzzed_images_through_the_int8_engine(model_dir: Path) -> None:
    result = fuzz("engine", 300, 3, "--model", str(model_dir))
    assert set(result["outcomes"]) <= DOCUMENTED and result["outcomes"].get("ok", 0) > 15
    assert result["peak_rss_mib"] <= PEAK_BOUND_MIB


def test_a_crash_would_be_reported() -> None:
    """The runner is not vacuous: a target that raises an undocumented exception fails the run."""
    script = (
        "import sys\nfrom tests.fuzz import run\n"
        "run.pixels_target = lambda: (lambda data, flag: 1 / 0)\n"
        "sys.exit(run.main(['--target', 'pixels', '--examples', '5']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "ZeroDivisionError" in json.loads(proc.stdout.strip().splitlines()[-1])["failure"]
