"""Build-time self check of the Lambda image: fail the ``docker build`` if the functions cannot start.

Runs as the image's last RUN step, as the runtime user, with the runtime's Python and files:
1. the shipped model files match the sha256 in manifest.json (model.fp32.onnx is deliberately absent);
2. both function modules import (``handler.s3``, ``handler.api``, ``handler.deploy_check``) and their INIT
   singleton builds: engine from MODEL_DIR plus the boto3 clients (no network: clients connect lazily); INIT
   refuses an untrained (random-init) or ungated model unless the build says ALLOW_UNTRAINED_MODEL=true;
3. the model passed its self-check on the build machine's CPU (its canaries give the build's vectors);
4. one generated JPEG (and a text, with a text tower) embeds to a unit vector of the manifest's dimension.
Exits non-zero with a message on the first failure.
"""

from __future__ import annotations

import importlib
import io
import platform
import sys
import time
from pathlib import Path


def fail(msg: str) -> int:
    print(f"image_check: FAILED: {msg}", file=sys.stderr)
    return 1


def main() -> int:
    from handler.settings import Settings  # reads no onnxruntime: safe before the CPU check below
    from layer.manifest import MANIFEST_FILE, MODEL_FILE, PREPROCESSOR_FILE, Manifest, sha256_file

    model_dir = Path(Settings.from_env().model_dir)
    missing = [name for name in (MODEL_FILE, PREPROCESSOR_FILE, MANIFEST_FILE) if not (model_dir / name).is_file()]
    if missing:
        return fail(f"{model_dir} lacks {missing}")
    manifest = Manifest.read(model_dir)
    for name, meta in manifest.files.items():
        path = model_dir / name
        if path.exists() and sha256_file(path) != meta.get("sha256"):
            return fail(f"{path} does not match the sha256 in manifest.json")

    from layer.cpu import CpuInfo

    arch = platform.machine()
    if CpuInfo.describes_other_arch(Path("/proc/cpuinfo").read_text(errors="replace"), arch):
        # A foreign-architecture build under QEMU < 8.1 (e.g. Debian 12's qemu-user-static): /proc/cpuinfo is
        # the host's, and onnxruntime's CPU detection hangs or crashes on it. tests/container/test_arm64.py runs the
        # same checks in this image with an arm64 /proc/cpuinfo mounted over it.
        print(
            f"image_check: {arch} under emulation without /proc/cpuinfo emulation: files verified, "
            "INIT and embedding checks skipped (run them with an arm64 /proc/cpuinfo: see test_arm64.py)"
        )
        return 0

    t0 = time.perf_counter()
    for module in ("handler.s3", "handler.api", "handler.deploy_check"):
        importlib.import_module(module)
    from handler import runtime
    from layer.errors import ModelDirError

    runtime.require_text()  # as the API function does: the text tower loads too, if the model has one
    try:
        rt = runtime.current()
    except ModelDirError as exc:
        return fail(str(exc))
    init_s = time.perf_counter() - t0
    check = rt.engine.self_check
    if check is None or not check.passed:
        return fail(f"the model's self-check failed: {check.reason if check else 'not run'}")
    dim = manifest.dim

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 120, 40)).save(buf, "JPEG")
    emb = rt.engine.embed_one(buf.getvalue())
    vec = emb.vector
    norm = float((vec * vec).sum()) ** 0.5
    if vec.shape != (dim,) or abs(norm - 1.0) > 1e-3:
        return fail(f"embedding shape {vec.shape} (the manifest says {dim}), norm {norm}")
    text = "no text tower"
    if manifest.text is not None:
        t = rt.engine.embed_text("a photo of a cat")
        if t.vector.shape != (dim,) or abs(float((t.vector * t.vector).sum()) ** 0.5 - 1.0) > 1e-3:
            return fail(f"text embedding shape {t.vector.shape}")
        text = f"text tower ok ({t.tokens} tokens)"
    why = runtime.untrained(manifest)
    if why:
        print(f"image_check: WARNING: UNTRAINED MODEL allowed by ALLOW_UNTRAINED_MODEL=true: {why}")
    print(
        f"image_check: ok: model {rt.engine.model_id}, import+init {init_s:.2f}s, dim {vec.shape[0]}, {text}, "
        f"self-check {check.ms:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
