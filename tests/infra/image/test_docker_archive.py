"""infra/image/docker_archive.py: a `docker load` archive that carries the architecture it is given."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from infra.image.docker_archive import write_archive


def test_archive_has_manifest_config_and_layer_for_the_architecture(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    (rootfs / "usr" / "bin" / "python3").write_text("#!/bin/sh\n")
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(rootfs, arcname=".")
    buf = io.BytesIO()
    write_archive(layer, "clip-lambda/base:test-arm64", "arm64", buf)

    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]
    (manifest,) = json.loads(files["manifest.json"])
    assert manifest["RepoTags"] == ["clip-lambda/base:test-arm64"] and manifest["Layers"] == ["layer.tar"]
    config_bytes = files[manifest["Config"]]
    assert manifest["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"  # content-addressed
    config = json.loads(config_bytes)
    assert (config["architecture"], config["os"]) == ("arm64", "linux")
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()]
    assert files["layer.tar"] == layer.read_bytes()
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])
