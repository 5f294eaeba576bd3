"""``tokenizer.json``: HF's CLIP tokenizer built from CLIP's own vocabulary, in the ``tokenizers`` format.

HF's ``CLIPTokenizer`` reads ``vocab.json`` + ``merges.txt`` (``layer.convert.bpe_vocab``) and builds CLIP's
byte-level BPE with "</w>" word ends; ``write_tokenizer`` keeps that model and sets the rest to what
open_clip's ``SimpleTokenizer`` (the reference) does, so that ``layer.text.ClipTokenizer`` equals it token
for token (tests/layer/convert/test_tokenizer.py: a corpus of odd strings against open_clip itself).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from layer.convert.bpe_vocab import EOS, BpeVocab
from layer.manifest import CONTEXT_LENGTH, TokenLayout


def hf_tokenizer(bpe: BpeVocab, context_length: int = CONTEXT_LENGTH) -> Any:
    """``transformers.CLIPTokenizer`` from vocab.json + merges.txt, as ``from_pretrained`` loads a checkpoint's."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="clip-vocab-") as tmp:
        bpe.write(Path(tmp))
        # A local directory just written, never the hub: there is no revision to pin (bandit's B615).
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=context_length, pad_token=EOS)  # nosec B615


# open_clip's pre-tokenizer regex without its special tokens (text that spells a special token is text), with
# its re.IGNORECASE as (?i): after lower-casing, the flag still lets "ſ" (long s) close the 's contraction.
OPEN_CLIP_PATTERN = r"""(?i)'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def write_tokenizer(bpe: BpeVocab, out: Path, context_length: int = CONTEXT_LENGTH) -> Path:
    """HF's CLIP BPE model and byte-level alphabet, rewired to do exactly what open_clip's ``SimpleTokenizer``
    does after its cleaning (which the engine runs in Python, ``layer.text.clean``): no normalizer (ftfy
    already made it NFC and lower case), open_clip's regex and then bytes (no second, GPT-2 regex), no added
    tokens (nothing in the text is matched as <|endoftext|>), no truncation or padding (the engine adds BOS
    and EOS by id, truncates and pads)."""
    backend = hf_tokenizer(bpe, context_length).backend_tokenizer
    data = json.loads(backend.to_str())
    data["normalizer"] = None
    data["added_tokens"] = []
    data["truncation"] = None
    data["padding"] = None
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": OPEN_CLIP_PATTERN}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def encode(tokenizer_json: Path, texts: list[str], layout: TokenLayout | None = None) -> np.ndarray:
    """int64 [len(texts), context] token ids, the text tower's ``input_ids``, by the engine's tokenizer."""
    from layer.text import ClipTokenizer

    tok = ClipTokenizer(tokenizer_json, layout)
    return np.stack([tok.encode(t).ids for t in texts])
