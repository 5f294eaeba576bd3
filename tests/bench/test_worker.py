"""One contender in a fresh process (bench/worker.py): its JSON line, what bench/run.py and bench/report.py
read, with a stand-in contender (the real ones: tests/bench/test_run.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import contenders, worker
from bench.report import summarise


class Contender:
    def __init__(self) -> None:
        self.files: list[str] = []
        self.pixels = 0

    def embed_file(self, path: Path) -> np.ndarray:
        self.files.append(path.name)
        return np.full(4, float(len(self.files)), np.float32)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.pixels += len(pixels)
        return np.zeros((len(pixels), 4), np.float32)


def test_the_worker_times_every_workload_after_a_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = Contender()
    monkeypatch.setattr(contenders, "load", lambda name, model, threads: fake)
    files = [tmp_path / f"{i}.jpg" for i in range(3)]
    spec = tmp_path / "workloads.json"
    spec.write_text(json.dumps({"jpeg": [str(f) for f in files], "model-only": []}))
    np.save(spec.with_suffix(".npy"), np.zeros((5, 3, 2, 2), np.float32))
    argv = ["--contender", "ours-int8", "--model", str(tmp_path), "--threads", "1", "--workloads", str(spec),
            "--cold-image", str(tmp_path / "cold.jpg")]  # fmt: skip
    assert worker.main(argv) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert out["contender"] == "ours-int8" and out["first_vector_head"] == [1.0, 1.0, 1.0, 1.0]
    assert out["process_start"] <= out["loaded_at"] <= out["first_vector_at"]
    assert fake.files == ["cold.jpg", "0.jpg", "0.jpg", "1.jpg", "2.jpg"]  # the cold image, a warm-up, then each
    assert len(out["workloads"]["jpeg"]) == 3 and len(out["workloads"]["model-only"]) == 5 and fake.pixels == 6
    assert out["last_vectors"] == {"jpeg": [5.0] * 4} and out["peak_rss_mib"] > 0
    summarise({"ours-int8": {**out, "spawned_at": out["process_start"]}})  # what bench/run.py does with it


def test_peak_rss_is_this_processs_high_water_mark() -> None:
    peak = worker.peak_rss_mib()
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    assert 0 < peak <= hwm
