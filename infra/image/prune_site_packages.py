"""Remove files from the image's venv that the functions never load (run in the Dockerfile's build stage).

Only what is provably dead at run time goes: test suites, C headers and static libraries used to build
extensions against a package, and type stubs. Each entry says why it is safe. Standard library only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Directory names removed wherever they occur inside a package (never at site-packages top level).
DEAD_DIRS = {"tests", "testing_data"}
# Paths relative to site-packages.
DEAD_PATHS = [
    "numpy/_core/include",  # C headers for building extensions against numpy
    "numpy/_core/lib",  # static npymath library, same purpose
    "numpy/f2py",  # Fortran wrapper generator, a build tool
    "numpy/_pyinstaller",
    "onnxruntime/transformers",  # model optimisation scripts (build time), not the inference API
    "onnxruntime/quantization",  # quantization tooling: the model is quantized before the image
    "onnxruntime/tools",  # model conversion / inspection tools
    "onnxruntime/datasets",  # sample models
    # The C API library for native callers; the Python extension (onnxruntime_pybind11_state) embeds the
    # runtime and does not link or dlopen it (ldd; the build's image_check then proves inference runs).
    "onnxruntime/capi/libonnxruntime.so.*",
    # tokenizers' dependency, used only by Tokenizer.from_pretrained (a hub download); the engine reads the
    # model directory's tokenizer.json with Tokenizer.from_file (and the image check embeds a text).
    "huggingface_hub",
    "hf_xet",
]
# botocore ships API models of ~450 services (~28 MB); the functions create only S3, DynamoDB and S3 Vectors
# clients. SQS and STS stay for tools run inside the image (e.g. a credential chain that assumes a role).
# Files at the top of botocore/data (endpoints, partitions, retry and default configs) always stay.
BOTOCORE_KEEP = {"s3", "dynamodb", "s3vectors", "sqs", "sts"}
DEAD_SUFFIXES = (".pyi", ".h", ".a")


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


def prune(sp: Path) -> int:
    removed = 0

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size

    for rel in DEAD_PATHS:
        for path in sp.glob(rel):
            removed += size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    data = sp / "botocore" / "data"
    for service in data.iterdir() if data.is_dir() else []:
        if service.is_dir() and service.name not in BOTOCORE_KEEP:
            removed += size(service)
            shutil.rmtree(service)
    for path in sorted(sp.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists() or path.parent == sp:
            continue
        if path.is_dir() and path.name in DEAD_DIRS:
            removed += size(path)
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith(DEAD_SUFFIXES):
            removed += path.stat().st_size
            path.unlink()
    return removed


def main(argv: list[str]) -> int:
    sp = site_packages(Path(argv[1] if len(argv) > 1 else "/opt/venv"))
    print(f"prune_site_packages: removed {prune(sp) / 1e6:.1f} MB from {sp}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
