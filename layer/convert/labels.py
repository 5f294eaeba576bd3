"""The zero-shot tags' vocabulary at build time: read the labels, make their prompts, and write their vectors
(the fp32 text tower's: the reference the shipped int8 tower was gated against on the same prompts).

``--labels FILE``: one label per line (``#`` comments and blank lines ignored); the default is
``labels.txt`` beside this module, a few hundred everyday things people photograph; ``--labels none`` builds
without tags. A label is at most ``MAX_LABEL_BYTES`` (it goes into each vector's filterable metadata of the
index, whose budget is 2 KB), and a vocabulary at most ``MAX_LABELS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from layer.manifest import LABELS_FILE, LABELS_NAMES_FILE, TagSpec

DEFAULT_LABELS = Path(__file__).with_name("labels.txt")
DEFAULT_PROMPT = "a photo of a {}."
DEFAULT_TOP_K = 5
MAX_LABEL_BYTES = 40
MAX_LABELS = 5_000
GATE_PREFIX = "label:"  # the gate's name of a label prompt input


class LabelsError(ValueError):
    """A vocabulary the build refuses (the CLI's exit status 2)."""


def read_labels(path: Path) -> list[str]:
    """The labels of ``path``, in order, without duplicates; refused if empty, too many or too long."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"--labels {path}: {exc}") from exc
    labels: list[str] = []
    seen: set[str] = set()
    for n, raw in enumerate(lines, 1):
        label = " ".join(raw.split())
        if not label or label.startswith("#"):
            continue
        if len(label.encode()) > MAX_LABEL_BYTES:
            raise LabelsError(f"--labels {path}:{n}: {label[:50]!r} is over {MAX_LABEL_BYTES} bytes")
        if label not in seen:
            seen.add(label)
            labels.append(label)
    if not labels:
        raise LabelsError(f"--labels {path}: no labels")
    if len(labels) > MAX_LABELS:
        raise LabelsError(f"--labels {path}: {len(labels)} labels; at most {MAX_LABELS}")
    return labels


def prompts(labels: list[str], prompt: str = DEFAULT_PROMPT) -> list[str]:
    if prompt.count("{}") != 1:
        raise LabelsError(f"the prompt {prompt!r} must hold one {{}} for the label")
    return [prompt.format(label) for label in labels]


def write_labels(folder: Path, labels: list[str], vectors: np.ndarray, *, prompt: str, source: str,
                 top_k: int = DEFAULT_TOP_K) -> TagSpec:  # fmt: skip
    """The label files of the model directory and their manifest entry."""
    np.save(folder / LABELS_FILE, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    (folder / LABELS_NAMES_FILE).write_text(json.dumps({"prompt": prompt, "labels": labels}, indent=0) + "\n")
    return TagSpec(file=LABELS_FILE, names_file=LABELS_NAMES_FILE, prompt=prompt, count=len(labels), top_k=top_k,
                   source=source, gate_inputs=len(labels))  # fmt: skip
