"""Peak memory: every image the default limits accept embeds inside the S3 function's default 1,024 MB.

Each case is the worst of its kind at the pixel limit (8000×8000 = 64 MP), made in a subprocess and cached
under .cache/test-images/, then embedded in a fresh process that also holds what the S3 function holds
(boto3, Powertools, the int8 session); its VmHWM is the peak. Decoded images live in Pillow at 4 bytes a
pixel (RGB included), so alpha, CMYK and rotated images, which need a converted copy, are the ones to watch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from layer.limits import DEFAULT_MAX_PIXELS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "test-images"
SIDE = int(DEFAULT_MAX_PIXELS**0.5)
BUDGET_MIB = 1024  # the template's S3FunctionMemorySize

MAKE = """
import sys
from PIL import Image
kind, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
exif = Image.Exif()
exif[0x0112] = 6  # rotated 90°: the decoder makes an upright copy
images = {
    "rgba.png": lambda: Image.new("RGBA", (n, n), (200, 30, 30, 128)),
    "la.png": lambda: Image.new("LA", (n, n), (90, 128)),
    "cmyk.jpg": lambda: Image.new("CMYK", (n, n), (10, 200, 30, 5)),
    "rotated.png": lambda: Image.new("RGB", (n, n), (10, 200, 30)),
    "i32.tif": lambda: Image.new("I", (n, n), 30000),
    "f32.tif": lambda: Image.new("F", (n, n), 100.5),
}
kw = {"rotated.png": {"exif": exif.tobytes()}, "i32.tif": {"compression": "tiff_adobe_deflate"},
      "f32.tif": {"compression": "tiff_adobe_deflate"}}.get(kind, {})
images[kind]().save(out, **kw)
"""

EMBED = """
import sys
from pathlib import Path
import boto3, aws_lambda_powertools  # noqa: F401 - what the S3 function's process holds too
from layer import Embedder
engine = Embedder.from_dir(sys.argv[1], threads=1)
emb = engine.embed_one(Path(sys.argv[2]).read_bytes())
status = Path("/proc/self/status").read_text().splitlines()
hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
print(emb.width, emb.height, hwm // 1024)
"""


@pytest.mark.parametrize("kind", ["rgba.png", "la.png", "cmyk.jpg", "rotated.png", "i32.tif", "f32.tif"])
def test_largest_images_embed_inside_the_default_memory(model_dir: Path, kind: str) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{SIDE}-{kind}"
    if not path.exists():
        tmp = path.with_suffix(".partial" + path.suffix)
        subprocess.run([sys.executable, "-c", MAKE, kind, str(tmp), str(SIDE)], check=True, timeout=300)
        tmp.rename(path)
    proc = subprocess.run(
        [sys.executable, "-c", EMBED, str(model_dir), str(path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    width, height, peak_mib = (int(x) for x in proc.stdout.split())
    print(f"{kind} {width}x{height}: peak {peak_mib} MiB")
    assert (width, height) == (SIDE, SIDE)
    assert peak_mib <= BUDGET_MIB
