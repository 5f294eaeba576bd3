"""Turn raw latencies into the summary table, the markdown report and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PEER = "fastembed-fp32"


def summarise(raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, out in raw.items():
        wl = {}
        for w, lat in out["workloads"].items():
            a = np.asarray(lat) * 1e3
            wl[w] = {
                "n": len(a),
                "images_per_s": round(len(a) / (a.sum() / 1e3), 2),
                "p50_ms": round(float(np.percentile(a, 50)), 1),
                "p95_ms": round(float(np.percentile(a, 95)), 1),
            }
        rows[name] = {
            "workloads": wl,
            "cold_start_s": round(out["first_vector_at"] - out["spawned_at"], 3),
            "load_s": round(out["loaded_at"] - out["process_start"], 3),
            "peak_rss_mib": round(out["peak_rss_mib"], 1),
        }
    if PEER in rows:
        for row in rows.values():
            for w, fig in row["workloads"].items():
                peer = rows[PEER]["workloads"].get(w)
                if peer:
                    fig["speedup_vs_fastembed"] = round(fig["images_per_s"] / peer["images_per_s"], 2)
                    # Medians resist the scheduling hiccups of a shared VM better than throughput does.
                    fig["p50_speedup_vs_fastembed"] = round(peer["p50_ms"] / fig["p50_ms"], 2)
    if "ours-fp32" in raw:  # agreement of the last image's vector with our fp32 (same weights for all)
        ref = raw["ours-fp32"]["last_vectors"]
        for name, out in raw.items():
            rows[name]["cosine_to_ours_fp32"] = {
                w: round(float(np.dot(v, ref[w]) / np.linalg.norm(v) / np.linalg.norm(ref[w])), 5)
                for w, v in out["last_vectors"].items()
                if w in ref
            }
    return rows


def write_markdown(result: dict[str, Any], path: Path) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['summary']}, {m['visible_cpus']} CPUs, onnxruntime {m['onnxruntime']}, "
        f"Python {m['python']}; {result['threads']} threads for every contender; "
        f"{result['images_per_workload']} images per workload; {result['created_at']}.",
        "",
        "| workload | contender | images/s | p50 ms | p95 ms | × fastembed (images/s) | × fastembed (p50) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    summary = result["summary"]
    for w in result["workloads"]:
        for name, row in summary.items():
            fig = row["workloads"].get(w)
            if fig:
                lines.append(
                    f"| {w} | {name} | {fig['images_per_s']} | {fig['p50_ms']} | {fig['p95_ms']} | "
                    f"{fig.get('speedup_vs_fastembed', '')} | {fig.get('p50_speedup_vs_fastembed', '')} |"
                )
    lines += ["", "| contender | cold start (new process → first vector) | peak RSS MiB |", "|---|---:|---:|"]
    for name, row in summary.items():
        lines.append(f"| {name} | {row['cold_start_s']} s | {row['peak_rss_mib']} |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    workloads = list(result["workloads"])
    names = list(summary)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [summary[name]["workloads"].get(w, {}).get("images_per_s", 0) for w in workloads]
        bars = ax.bar(np.arange(len(workloads)) + i * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(np.arange(len(workloads)) + width * (len(names) - 1) / 2, workloads)
    ax.set_ylabel("images / s (higher is better)")
    ax.set_yscale("log")
    m = result["machine"]
    ax.set_title(f"CLIP ViT-B/32 embedding, {result['threads']} threads, {m['cpu']} ({m.get('kernel_path', '?')})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
