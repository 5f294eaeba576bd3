"""``manifest.json`` of a model directory: what was built, from what, and how well it passed the gate.

``Manifest`` is the typed contract between the build (``layer.convert`` writes it) and the engine, the API's
``GET /model`` and the tools (which read it). Sections whose shape belongs to one producer (the gate, the
quantization settings, the per-CPU-path results) stay JSON objects; the fields anything decides on are typed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from layer.errors import ModelDirError

MODEL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"
PREPROCESSOR_FILE = "preprocessor_config.json"
MANIFEST_FILE = "manifest.json"
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "image_embeds"
DIM = 512
# The text tower (absent from image-only builds): int8 model, its fp32 reference export, the BPE tokenizer.
TEXT_MODEL_FILE = "text_model.onnx"
TEXT_FP32_FILE = "text_model.fp32.onnx"
TOKENIZER_FILE = "tokenizer.json"
TEXT_INPUT_NAME = "input_ids"
TEXT_OUTPUT_NAME = "text_embeds"
CONTEXT_LENGTH = 77
BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>, also the padding (as HF's CLIPTokenizer pads)


@dataclass(frozen=True)
class TextTower:
    """What the engine needs of the manifest's ``text`` section to tokenize and run the text tower.

    Input: ``input_ids`` int64 [N, context_length] = bos_id, the text's tokens, eos_id, then pad_id up to the
    context. No attention mask: the transformer is causal and pools at the first eos_id, so nothing after it
    changes the vector (in fp32; int8 scales activations per tensor, so pad with ``pad_id`` exactly, one text
    per run). Output: ``text_embeds`` float32 [N, dim] = ``CLIPModel.get_text_features``, not normalized."""

    file: str = TEXT_MODEL_FILE
    fp32_file: str = TEXT_FP32_FILE
    tokenizer: str = TOKENIZER_FILE
    context_length: int = CONTEXT_LENGTH
    pad_id: int = EOS_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    dim: int = DIM
    input_name: str = TEXT_INPUT_NAME
    output_name: str = TEXT_OUTPUT_NAME
    precision: str = "int8"  # "fp32": ``file`` is the fp32 export
    quantization: dict[str, Any] | None = None  # as built; picks the int8 session tuning (layer.cpu.int8_tuning)
    cpu_paths: tuple[dict[str, Any], ...] = ()  # the text gate per int8 kernel path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextTower:
        try:
            return cls(
                file=str(d["file"]),
                fp32_file=str(d["fp32_file"]),
                tokenizer=str(d["tokenizer"]),
                context_length=int(d["context_length"]),
                pad_id=int(d["pad_id"]),
                bos_id=int(d["bos_id"]),
                eos_id=int(d["eos_id"]),
                dim=int(d.get("dim", DIM)),
                input_name=str((d.get("input") or {}).get("name", TEXT_INPUT_NAME)),
                output_name=str((d.get("output") or {}).get("name", TEXT_OUTPUT_NAME)),
                precision=str(d.get("precision", "int8")),
                quantization=d.get("quantization"),
                cpu_paths=tuple(d.get("cpu_paths") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelDirError(f"the manifest's text section is malformed: {exc!r}") from exc

    def gate_for(self, kernel_path: str) -> dict[str, Any] | None:
        """The text gate's result on one int8 kernel path, or None if it has none."""
        return next((p for p in self.cpu_paths if p.get("path") == kernel_path), None)


@dataclass(frozen=True)
class Manifest:
    model_id: str
    precision: str = "int8"  # "int8": model.onnx is quantized; "fp32": model.onnx is the fp32 export
    dim: int = DIM
    source: dict[str, Any] = field(default_factory=dict)
    random_init: bool = False  # an untrained model: well-formed vectors without meaning
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    opset: int | None = None
    quantization: dict[str, Any] | None = None  # layer.convert.quantize.QuantSettings, as built
    graph_optimization: str | None = None
    accuracy_gate: dict[str, Any] | None = None
    cpu_paths: list[dict[str, Any]] = field(default_factory=list)  # the gate per int8 kernel path
    built_on: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    built_at: str | None = None
    build_seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → sha256, bytes
    # The text tower as built (files, token layout, quantization, its own gate and per-CPU-path results);
    # None: an image-only build (``--no-text``) or a manifest from before the text tower.
    text: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict) or not isinstance(d.get("model_id"), str):
            raise ModelDirError("the manifest has no model_id")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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

    @property
    def text_tower(self) -> TextTower | None:
        """The typed view of ``text`` (raises ``ModelDirError`` if it is malformed), or None."""
        return None if self.text is None else TextTower.from_dict(self.text)

    def gate_for(self, kernel_path: str) -> dict[str, Any] | None:
        """The build gate's result on one int8 kernel path (``layer.cpu``), or None if it has none."""
        return next((p for p in self.cpu_paths if p.get("path") == kernel_path), None)

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
