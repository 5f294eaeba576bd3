"""``python -m layer.embed_pixels MODEL_DIR PIXELS.npy OUT.npy``: the engine's int8 model on preprocessed pixels.

The build's gate runs this in emulated CPUs (``layer.convert.cpu_paths``): exactly the runtime's session,
tuned for the CPU it detects, on the gate's pixel tensors, so that each path's vectors can be compared with
the build machine's. Prints one JSON line: the CPU report and the seconds per image.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from layer.embedder import Embedder


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, pixels_path, out_path = argv
    embedder = Embedder.from_dir(model_dir, threads=1)
    pixels = np.load(pixels_path)
    t0 = time.perf_counter()
    vectors, _ = embedder.embed_pixels(pixels)
    seconds = (time.perf_counter() - t0) / max(1, len(pixels))
    np.save(out_path, vectors)
    print(json.dumps({"cpu": embedder.cpu_report(), "seconds_per_image": round(seconds, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
