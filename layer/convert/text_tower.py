"""What only the text tower does at build time: tokenizer.json (CLIP's vocabulary, ``layer.convert.tokenizer``)
and the text tower + projection exported to ``text_model.fp32.onnx``; its quantization settings (the vision
tower's weight format, plus the 49,408-row token embedding as int8 rows, 25 MB instead of 100 MB). The rest
(int8, gate, recovery, canary) is every tower's (``layer.convert.towers``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from layer.convert.bpe_vocab import load_bpe
from layer.convert.export import export_text_onnx
from layer.convert.quantize import GATHER, QuantSettings
from layer.convert.source import NoTextTower, load_text_source
from layer.convert.tokenizer import write_tokenizer
from layer.manifest import TEXT_FP32_FILE, TOKENIZER_FILE


@dataclass(frozen=True)
class TextExport:
    """What the fp32 export and the tokenizer fixed: the token layout and the output size."""

    context_length: int
    bos_id: int
    eos_id: int
    vocab_size: int
    dim: int
    tokenizer_source: dict[str, Any]


def export_text(source: str, folder: Path, *, revision: str | None = None, seed: int = 0) -> TextExport:
    """Write ``tokenizer.json`` and ``text_model.fp32.onnx`` of ``source`` into ``folder``."""
    from importlib.metadata import version

    import transformers

    bpe = load_bpe()
    loaded = load_text_source(source, revision=revision, seed=seed)
    config = loaded.model.config
    if config.vocab_size != len(bpe.vocab):
        raise NoTextTower(f"{source!r}: a text tower over {config.vocab_size} tokens, not CLIP's {len(bpe.vocab)}")
    write_tokenizer(bpe, folder / TOKENIZER_FILE, loaded.context_length)
    export_text_onnx(loaded.model, folder / TEXT_FP32_FILE, context_length=loaded.context_length)
    return TextExport(
        context_length=loaded.context_length,
        bos_id=bpe.bos_id,
        eos_id=bpe.eos_id,
        vocab_size=len(bpe.vocab),
        dim=int(loaded.model.text_projection.out_features),
        tokenizer_source={
            **bpe.source,
            "equals": "open_clip.tokenizer.SimpleTokenizer (clean='lower'), special-token text encoded as text",
            "bpe": f"transformers {transformers.__version__} CLIPTokenizer's BPE model",
            "ftfy": version("ftfy"),
        },
    )


def text_quant(
    image: QuantSettings,
    *,
    method: Literal["dynamic", "static"] = "dynamic",
    op_types: tuple[str, ...] = ("MatMul", GATHER),
    nodes_to_exclude: tuple[str, ...] = (),
) -> QuantSettings:
    """The vision tower's weight format (bits, per channel, signedness, portable Softmax: the same session
    tuning and the same vectors on every CPU) with the text tower's own op types and exclusions."""
    return dataclasses.replace(image, method=method, op_types=op_types, nodes_to_exclude=nodes_to_exclude)
