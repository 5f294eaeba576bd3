"""The text half of the engine: text → CLIP BPE token ids → the text tower → an L2-normalized vector in the
same space as the images (so a text's vector · an image's vector is CLIP's similarity).

The tokenizer is the build's ``tokenizer.json`` read with the ``tokenizers`` package (no transformers in the
image): lower-cased, whitespace-cleaned CLIP BPE, <|startoftext|> … <|endoftext|>. A text longer than the
77-token context keeps its first 75 tokens (as HF's CLIPTokenizer truncates) and says so. Like images, texts
run through the model one at a time: dynamic int8 quantization scales activations per tensor, so a batch
would couple its texts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layer.errors import EmptyText, ModelDirError, TextError, TextTooLong

TEXT_INPUT = "input_ids"
TEXT_OUTPUT = "text_embeds"
MAX_TEXT_CHARS = 1000  # the API's bound per text; the tokenizer itself would take any length


@dataclass(frozen=True)
class Tokens:
    ids: np.ndarray = field(repr=False)  # int64 [context_length]: BOS, tokens, EOS, padding
    count: int  # tokens kept, BOS and EOS included
    truncated: bool  # the text had more tokens than the context holds


@dataclass(frozen=True)
class TextTimings:
    tokenize_ms: float = 0.0
    inference_ms: float = 0.0


@dataclass(frozen=True)
class TextEmbedding:
    vector: np.ndarray = field(repr=False)  # float32 [dim], unit L2 norm
    norm: float
    model: str
    tokens: int
    truncated: bool
    timings: TextTimings = field(default_factory=TextTimings, compare=False)

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


class ClipTokenizer:
    """``tokenizer.json`` with CLIP's context: ids padded to ``context_length`` with ``pad_id``."""

    def __init__(self, path: str | Path, *, context_length: int = 77, pad_id: int = 49407, eos_id: int = 49407):
        from tokenizers import Tokenizer  # the only place the engine needs it: image-only uses never load it

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers package raises its own Exception type for bad files
            raise ModelDirError(f"{path}: not a tokenizer.json ({exc})") from exc
        self._tok.no_truncation()
        self._tok.no_padding()
        self.context_length, self.pad_id, self.eos_id = context_length, pad_id, eos_id

    def encode(self, text: str) -> Tokens:
        ids = self._tok.encode(text).ids  # BOS … EOS from the post-processor
        truncated = len(ids) > self.context_length
        if truncated:
            ids = [*ids[: self.context_length - 1], self.eos_id]
        out = np.full(self.context_length, self.pad_id, dtype=np.int64)
        out[: len(ids)] = ids
        return Tokens(ids=out, count=len(ids), truncated=truncated)


def check_text(text: Any, max_chars: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(text, str):
        raise TextError(f"a text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise EmptyText("the text is empty")
    if len(text) > max_chars:
        raise TextTooLong(f"the text has {len(text)} characters; the limit is {max_chars}")
    return text


class TextEncoder:
    """The text tower's session and tokenizer; built by ``Embedder.from_dir(..., text=True)``."""

    def __init__(
        self, session: Any, tokenizer: ClipTokenizer, model_id: str, io: tuple[str, str] = (TEXT_INPUT, TEXT_OUTPUT)
    ) -> None:
        self.session, self.tokenizer, self.model_id = session, tokenizer, model_id
        self.input_name, self.output_name = io

    def embed(self, text: str) -> TextEmbedding:
        t0 = time.perf_counter()
        tokens = self.tokenizer.encode(check_text(text))
        t1 = time.perf_counter()
        features = self.session.run([self.output_name], {self.input_name: tokens.ids[None]})[0]
        t2 = time.perf_counter()
        norm = float(np.linalg.norm(features[0].astype(np.float64)))
        unit = (features[0] / max(norm, 1e-12)).astype(np.float32)
        return TextEmbedding(
            vector=unit,
            norm=norm,
            model=self.model_id,
            tokens=tokens.count,
            truncated=tokens.truncated,
            timings=TextTimings((t1 - t0) * 1e3, (t2 - t1) * 1e3),
        )
