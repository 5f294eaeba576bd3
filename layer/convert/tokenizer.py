"""``tokenizer.json``: HF's CLIP tokenizer built from CLIP's own vocabulary, in the ``tokenizers`` format.

HF's ``CLIPTokenizer`` reads ``vocab.json`` + ``merges.txt`` (``layer.convert.bpe_vocab``) and sets up CLIP's
pipeline: NFC, whitespace runs to one space, lower case, CLIP's pre-tokenizer regex, byte-level BPE with
"</w>" word ends, <|startoftext|> … <|endoftext|>. The saved file also truncates and pads to the context
(77: <|startoftext|>, the first 75 tokens, <|endoftext|>, then the pad id, <|endoftext|>), so that
``tokenizers.Tokenizer.from_file(...).encode(text).ids`` alone is the text tower's input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from layer.convert.bpe_vocab import EOS, BpeVocab
from layer.manifest import CONTEXT_LENGTH


def hf_tokenizer(bpe: BpeVocab, context_length: int = CONTEXT_LENGTH) -> Any:
    """``transformers.CLIPTokenizer`` from vocab.json + merges.txt, as ``from_pretrained`` loads a checkpoint's."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="clip-vocab-") as tmp:
        bpe.write(Path(tmp))
        # A local directory just written, never the hub: there is no revision to pin (bandit's B615).
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=context_length, pad_token=EOS)  # nosec B615


def write_tokenizer(bpe: BpeVocab, out: Path, context_length: int = CONTEXT_LENGTH) -> Path:
    """Save HF's tokenizer with truncation and padding to ``context_length`` switched on."""
    backend = hf_tokenizer(bpe, context_length).backend_tokenizer
    backend.enable_truncation(max_length=context_length)  # room for the two special tokens is kept
    backend.enable_padding(length=context_length, pad_id=bpe.eos_id, pad_token=EOS)
    backend.save(str(out))
    return out


def encode(tokenizer_json: Path, texts: list[str]) -> np.ndarray:
    """int64 [len(texts), context] token ids, the text tower's ``input_ids``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    return np.array([e.ids for e in tok.encode_batch(texts)], dtype=np.int64)
