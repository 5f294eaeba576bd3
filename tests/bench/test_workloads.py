"""The benchmark's inputs (bench/workloads.py): real photos at each workload's size, written once and reused."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench.workloads import make_workloads


def test_each_workload_holds_its_files_at_its_size_written_once(tmp_path: Path) -> None:
    workloads = {w.name: w for w in make_workloads(tmp_path / "images", 1)}
    assert list(workloads) == ["jpeg-12mp", "jpeg-1080p", "png-640x480", "model-only"]
    for name, size, fmt in (("jpeg-12mp", (4000, 3000), "JPEG"), ("jpeg-1080p", (1920, 1080), "JPEG"),
                            ("png-640x480", (640, 480), "PNG")):  # fmt: skip
        [path] = workloads[name].files
        with Image.open(path) as img:
            assert (img.size, img.format) == (size, fmt), name
    assert workloads["model-only"].files == []
    [png] = workloads["png-640x480"].files
    png.write_bytes(b"kept")  # written once: a later run reuses what is there
    assert make_workloads(tmp_path / "images", 1)[2].files == [png] and png.read_bytes() == b"kept"
