"""infra/image/prune_site_packages.py: what leaves the image's venv (tests, headers, stubs, tools, unused
botocore models) and what must stay (every module the functions import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.image.prune_site_packages import main, prune, site_packages

KEPT = [
    "numpy/__init__.py",
    "numpy/_core/_multiarray_umath.so",
    "onnxruntime/capi/onnxruntime_pybind11_state.so",  # the runtime the functions load
    "onnxruntime/capi/__init__.py",
    "botocore/data/endpoints.json",  # the top of botocore/data always stays
    "botocore/data/s3/2006-03-01/service-2.json.gz",
    "botocore/data/dynamodb/2012-08-10/service-2.json.gz",
    "botocore/data/s3vectors/2025-07-15/service-2.json.gz",
    "botocore/data/sqs/2012-11-05/service-2.json.gz",
    "botocore/data/sts/2011-06-15/service-2.json.gz",
    "tests/keep.py",  # a top-level package named tests is not a package's test suite
    "PIL/Image.py",
]
REMOVED = [
    "numpy/_core/include/numpy/ndarraytypes.h",
    "numpy/_core/lib/libnpymath.a",
    "numpy/f2py/__init__.py",
    "numpy/tests/test_numeric.py",
    "PIL/testing_data/sample.png",
    "onnxruntime/transformers/optimizer.py",
    "onnxruntime/quantization/quantize.py",
    "onnxruntime/tools/convert.py",
    "onnxruntime/capi/libonnxruntime.so.1.20.1",  # the C API for native callers
    "huggingface_hub/__init__.py",
    "botocore/data/ec2/2016-11-15/service-2.json.gz",
    "PIL/Image.pyi",
    "PIL/ImagingUtils.h",
]


def tree(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)


def test_only_what_is_dead_at_run_time_goes(tmp_path: Path) -> None:
    sp = tmp_path / "lib" / "python3.11" / "site-packages"
    tree(sp, KEPT + REMOVED)
    assert prune(sp) == 10 * len(REMOVED)  # the bytes removed
    assert [rel for rel in KEPT if not (sp / rel).exists()] == []
    assert [rel for rel in REMOVED if (sp / rel).exists()] == []
    assert not (sp / "botocore" / "data" / "ec2").exists() and not (sp / "numpy" / "tests").exists()
    assert prune(sp) == 0  # nothing left to remove: a second run is harmless


def test_the_venv_is_found_by_its_site_packages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sp = tmp_path / "venv" / "lib" / "python3.12" / "site-packages"
    tree(sp, ["numpy/tests/t.py"])
    assert site_packages(tmp_path / "venv") == sp
    assert main(["prune", str(tmp_path / "venv")]) == 0
    assert f"removed 0.0 MB from {sp}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no site-packages"):
        site_packages(tmp_path / "empty")
