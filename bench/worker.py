"""One contender in a fresh process: cold start, then every workload. Prints one JSON object.

A process per contender keeps peak RSS and cold start honest (nothing is shared or already imported).
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # as early as possible: imports below count towards cold start

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def peak_rss_mib() -> float:
    """VmHWM, not ru_maxrss: ru_maxrss survives exec and so includes the parent's RSS at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--contender", required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--workloads", type=Path, required=True, help="JSON: name -> list of files")
    p.add_argument("--cold-image", type=Path, required=True)
    args = p.parse_args(argv)

    import numpy as np

    from bench.contenders import load

    contender = load(args.contender, args.model, args.threads)
    t_loaded = time.time()
    first = contender.embed_file(args.cold_image)
    t_first = time.time()
    result: dict[str, object] = {
        "contender": args.contender,
        "process_start": T_PROCESS,
        "loaded_at": t_loaded,
        "first_vector_at": t_first,
        "first_vector_head": [float(x) for x in first[:4]],
        "workloads": {},
    }
    workloads: dict[str, list[str]] = json.loads(args.workloads.read_text())
    tensors = np.load(args.workloads.with_suffix(".npy"))
    vectors: dict[str, list[float]] = {}
    for name, files in workloads.items():
        latencies: list[float] = []
        if name == "model-only":
            contender.embed_pixels(tensors[:1])  # warm-up
            for i in range(tensors.shape[0]):
                t0 = time.perf_counter()
                contender.embed_pixels(tensors[i : i + 1])
                latencies.append(time.perf_counter() - t0)
        else:
            contender.embed_file(Path(files[0]))  # warm-up
            for f in files:
                t0 = time.perf_counter()
                v = contender.embed_file(Path(f))
                latencies.append(time.perf_counter() - t0)
            vectors[name] = [float(x) for x in v]
        result["workloads"][name] = latencies  # type: ignore[index]
    result["last_vectors"] = vectors
    result["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
