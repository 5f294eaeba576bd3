"""``manifest.json`` of a model directory: what was built, from what, and how well each tower passed the gate.

``Manifest`` is the typed contract between the build (``layer.convert`` writes it) and the engine, the API's
``GET /model`` and the tools (which read it). A model has towers (``image``, and ``text`` unless built with
``--no-text``), each described by the same ``TowerSpec``: its files, its input and output, the vector
dimension, how it was quantized (and recovered), its gate on every CPU path, its speed and its canary. The
sections whose shape belongs to one producer (the gate, the quantization settings, the recovery) stay JSON
objects; what anything decides on is typed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layer.errors import ModelDirError

FORMAT = 2  # 1: the image tower at the top level and an optional "text" section (before towers)
MANIFEST_FILE = "manifest.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
IMAGE = "image"
TEXT = "text"
TOWERS = (IMAGE, TEXT)
# File and tensor names of the towers as the build writes them (the manifest names them again per tower).
MODEL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "image_embeds"
TEXT_MODEL_FILE = "text_model.onnx"
TEXT_FP32_FILE = "text_model.fp32.onnx"
TOKENIZER_FILE = "tokenizer.json"
TEXT_INPUT_NAME = "input_ids"
TEXT_OUTPUT_NAME = "text_embeds"
LABELS_FILE = "labels.npy"  # the zero-shot tags' label vectors (float32 [labels, dim], unit rows)
LABELS_NAMES_FILE = "labels.json"  # their labels, in the same order
CONTEXT_LENGTH = 77
BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>, also the padding (as HF's CLIPTokenizer and open_clip pad)


def encode_vector(v: np.ndarray) -> str:
    """A vector as base64 of little-endian float32 (exact, and a quarter of a JSON list's size)."""
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class TokenLayout:
    """The text tower's input: ``bos_id``, the text's tokens, ``eos_id``, then ``pad_id`` up to
    ``context_length``. No attention mask: the tower is causal and pools at the first ``eos_id``."""

    file: str = TOKENIZER_FILE
    context_length: int = CONTEXT_LENGTH
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    pad_id: int = EOS_ID
    source: dict[str, Any] = field(default_factory=dict)  # the reference tokenizer it equals (open_clip)


@dataclass(frozen=True)
class Canary:
    """A fixed input and the vectors the build computed for it: the engine embeds it at INIT, on the CPU it
    got, and refuses to write vectors if they differ (``layer.selfcheck``)."""

    input: dict[str, Any]  # {"png_base64": ...} (image) or {"text": ...} (text)
    fp32: str  # encode_vector of the fp32 export's unit vector
    int8: dict[str, str] = field(default_factory=dict)  # kernel path (layer.cpu) → the shipped model's vector
    min_cosine: float = 0.999  # vs fp32: the build's gate
    # Min cosine to the build's int8 vector of: this very kernel path ("same_path"), another path of the
    # same x86 family ("same_arch": x86 paths compute identical vectors), another arm64 path
    # ("arm64_other_path": arm64's float kernels differ between Graviton generations).
    agreement: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Canary:
        return cls(
            input=dict(d["input"]),
            fp32=str(d["fp32"]),
            int8={str(k): str(v) for k, v in (d.get("int8") or {}).items()},
            min_cosine=float(d.get("min_cosine", 0.999)),
            agreement={str(k): float(v) for k, v in (d.get("agreement") or {}).items()},
        )


@dataclass(frozen=True)
class TowerSpec:
    """One tower of the model directory. Input: ``input_name`` [N, ...] (pixel values float32 [N,3,H,W] or
    token ids int64 [N, context]); output: ``output_name`` float32 [N, dim], before L2 normalization
    (``CLIPModel.get_image_features`` / ``get_text_features``)."""

    name: str
    file: str
    fp32_file: str
    input_name: str
    output_name: str
    dim: int
    precision: str = "int8"  # "fp32": ``file`` is the fp32 export
    input: dict[str, Any] = field(default_factory=dict)  # dtype, shape, layout, as written by the build
    quantization: dict[str, Any] | None = None  # layer.convert.quantize.QuantSettings, as built
    graph_optimization: str | None = None
    accuracy_gate: dict[str, Any] | None = None  # int8 vs fp32 on this tower's gate inputs, after recovery
    recovery: dict[str, Any] | None = None  # method, kept_fp32, gate before/after, the plans tried
    cpu_paths: tuple[dict[str, Any], ...] = ()  # the gate per int8 kernel path
    speed: dict[str, Any] | None = None  # model-only ms: int8 / shipped / fp32, on the CPU named
    canary: Canary | None = None
    preprocessor: str | None = None  # image: preprocessor_config.json
    tokens: TokenLayout | None = None  # text: the tokenizer and the token layout

    @property
    def kept_fp32(self) -> tuple[str, ...]:
        """Nodes the build left in fp32 to meet the gate (empty when none)."""
        return tuple((self.recovery or {}).get("kept_fp32") or ())

    def gate_for(self, kernel_path: str) -> dict[str, Any] | None:
        """The gate's result on one int8 kernel path (``layer.cpu``), or None if it has none."""
        return next((p for p in self.cpu_paths if p.get("path") == kernel_path), None)

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> TowerSpec:
        try:
            tokens = d.get("tokens")
            canary = d.get("canary")
            return cls(
                name=name,
                file=str(d["file"]),
                fp32_file=str(d["fp32_file"]),
                input_name=str(d["input_name"]),
                output_name=str(d["output_name"]),
                dim=int(d["dim"]),
                precision=str(d.get("precision", "int8")),
                input=dict(d.get("input") or {}),
                quantization=d.get("quantization"),
                graph_optimization=d.get("graph_optimization"),
                accuracy_gate=d.get("accuracy_gate"),
                recovery=d.get("recovery"),
                cpu_paths=tuple(d.get("cpu_paths") or ()),
                speed=d.get("speed"),
                canary=Canary.from_dict(canary) if canary else None,
                preprocessor=d.get("preprocessor"),
                tokens=TokenLayout(**tokens) if tokens else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelDirError(f"the manifest's {name} tower is malformed: {exc!r}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        d["cpu_paths"] = list(self.cpu_paths)
        return d


@dataclass(frozen=True)
class TagSpec:
    """Zero-shot tags: a label vocabulary embedded by the text tower at build time (``prompt`` with each label,
    e.g. "a photo of a {}."), the vectors of the fp32 text tower (the reference) in ``file``; each image's
    ``top_k`` labels by cosine are its tags. The text tower's gate covered every prompt (``gate_inputs``)."""

    file: str
    names_file: str
    prompt: str
    count: int
    top_k: int = 5
    source: str = ""  # where the vocabulary came from (the default list, or the --labels file)
    gate_inputs: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TagSpec:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Manifest:
    model_id: str
    dim: int
    towers: dict[str, TowerSpec]
    format: int = FORMAT
    precision: str = "int8"  # the towers' ("int8" also when a recovery kept nodes in fp32)
    source: dict[str, Any] = field(default_factory=dict)
    random_init: bool = False  # an untrained model: well-formed vectors without meaning
    opset: int | None = None
    built_on: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    built_at: str | None = None
    build_seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → sha256, bytes
    tags: TagSpec | None = None  # zero-shot tags (a model built with a label vocabulary and a text tower)

    def __post_init__(self) -> None:
        if IMAGE not in self.towers:
            raise ModelDirError("the manifest has no image tower")
        for spec in self.towers.values():
            if spec.dim != self.dim:
                raise ModelDirError(f"the {spec.name} tower's dimension {spec.dim} is not the model's {self.dim}")

    @property
    def image(self) -> TowerSpec:
        return self.towers[IMAGE]

    @property
    def text(self) -> TowerSpec | None:
        return self.towers.get(TEXT)

    @property
    def gated(self) -> bool:
        """Every int8 tower passed its accuracy gate (fp32 towers need none)."""
        return all(t.precision == "fp32" or bool((t.accuracy_gate or {}).get("passed")) for t in self.towers.values())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict) or not isinstance(d.get("model_id"), str):
            raise ModelDirError("the manifest has no model_id")
        if "towers" not in d:
            raise ModelDirError(
                "the manifest predates towers (clip-lambda manifest format 1): rebuild the model directory "
                "with `clip-lambda build-model`"
            )
        try:
            towers = {str(name): TowerSpec.from_dict(str(name), spec) for name, spec in dict(d["towers"]).items()}
            known = {f for f in cls.__dataclass_fields__} - {"towers", "dim", "tags"}
            tags = TagSpec.from_dict(dict(d["tags"])) if d.get("tags") else None
            return cls(towers=towers, dim=int(d["dim"]), tags=tags, **{k: v for k, v in d.items() if k in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelDirError(f"the manifest is malformed: {exc!r}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["towers"] = {name: spec.to_dict() for name, spec in self.towers.items()}
        return d

    @classmethod
    def read(cls, model_dir: str | Path) -> Manifest:
        path = Path(model_dir) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelDirError(f"{path} not found: build one with `clip-lambda build-model --out DIR`") from exc
        except json.JSONDecodeError as exc:
            raise ModelDirError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MANIFEST_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def verify_files(self, model_dir: str | Path, *, missing_ok: frozenset[str] = frozenset()) -> None:
        """Check every file's sha256 (at image build time, not at each cold start); ``missing_ok``: files
        the directory may leave out (the image ships no fp32 export)."""
        for name, meta in self.files.items():
            path = Path(model_dir) / name
            if not path.exists():
                if name in missing_ok:
                    continue
                raise ModelDirError(f"{path} listed in the manifest is missing")
            digest = sha256_file(path)
            if digest != meta["sha256"]:
                raise ModelDirError(f"{path}: sha256 {digest} does not match the manifest ({meta['sha256']})")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
