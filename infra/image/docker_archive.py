"""Write a ``docker load`` archive of one root file system, for an explicit CPU architecture.

    tar -C ROOTFS -c . > layer.tar
    python3 infra/image/docker_archive.py layer.tar clip-lambda/base:bookworm-arm64 arm64 | docker load

Why not ``docker import``: Debian's Docker engine (20.10) records the host's architecture on imported
images whatever ``--platform`` says, and an arm64 base labelled amd64 makes every image built on it lie
about its architecture (Lambda refuses such an image for an arm64 function). The archive format is the one
``docker save`` writes: manifest.json, the image config (architecture, os, env, cmd, the layer's diff id)
and the layer tar. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import BinaryIO

ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def image_config(diff_id: str, arch: str, comment: str) -> dict[str, object]:
    return {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ENV, "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": comment}],
    }


def write_archive(layer: Path, tag: str, arch: str, out: BinaryIO, comment: str = "debootstrap") -> None:
    config = json.dumps(image_config(sha256_file(layer), arch, comment), sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(fileobj=out, mode="w|") as archive:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        archive.add(layer, arcname="layer.tar")


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    layer, tag, arch = Path(argv[0]), argv[1], argv[2]
    write_archive(layer, tag, arch, sys.stdout.buffer, *argv[3:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
