"""The text half of the engine: text → CLIP BPE token ids → the text tower → an L2-normalized vector in the
same space as the images (so a text's vector · an image's vector is CLIP's similarity).

The tokenizer equals open_clip's ``SimpleTokenizer`` (the reference CLIP tokenizer) token for token: the
same cleaning (ftfy, HTML entities, whitespace, lower case), then the build's ``tokenizer.json`` read with
the ``tokenizers`` package (no transformers in the image) for CLIP's regex and BPE, <|startoftext|> …
<|endoftext|>. A text longer than the 77-token context keeps its first 75 tokens (as open_clip truncates)
and says so. Like images, texts
run through the model one at a time: dynamic int8 quantization scales activations per tensor, so a batch
would couple its texts.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layer.embedding import Embedding, Timings
from layer.errors import EmptyText, ModelDirError, TextError, TextTooLong
from layer.manifest import TokenLayout
from layer.tower import TowerSession

MAX_TEXT_CHARS = 1000  # the API's bound per text; the tokenizer itself would take any length
# U+0345 matches none of open_clip's regex alternatives under its case-insensitive flag (the regex package's
# case folding), so open_clip drops it; Oniguruma would keep it: dropped here too, as a separator.
YPOGEGRAMMENI = "\u0345"


@dataclass(frozen=True)
class Tokens:
    ids: np.ndarray = field(repr=False)  # int64 [context_length]: BOS, tokens, EOS, padding
    count: int  # tokens kept, BOS and EOS included
    truncated: bool  # the text had more tokens than the context holds


def clean(text: str) -> str:
    """open_clip's ``_clean_lower``, exactly: ftfy's ``fix_text`` (mojibake, curly quotes, ligatures, full-width
    letters, control characters, NFC), HTML entities unescaped twice, whitespace runs to one space, trimmed,
    lower-cased. The reference tokenizer cleans every text this way before BPE."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """CLIP's tokenizer as open_clip's ``SimpleTokenizer`` runs it: ``clean`` in Python, then CLIP's
    pre-tokenizer regex and byte-level BPE from ``tokenizer.json`` (the ``tokenizers`` package), which holds
    no special tokens to match in the text: ``<|endoftext|>`` typed in a query is text, never the end of it
    (``bos_id``/``eos_id`` are added by id). Ids padded to the context with ``pad_id``."""

    def __init__(self, path: str | Path, layout: TokenLayout | None = None) -> None:
        import ftfy  # noqa: F401 - imported here, at INIT, not in the first request
        from tokenizers import Tokenizer  # the only place the engine needs it: image-only uses never load it

        self.layout = layout or TokenLayout()
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers package raises its own Exception type for bad files
            raise ModelDirError(f"{path}: not a tokenizer.json ({exc})") from exc
        if self._tok.get_added_tokens_decoder():
            raise ModelDirError(
                f"{path} matches special tokens in the text (an older build): rebuild the model directory"
            )
        self._tok.no_truncation()
        self._tok.no_padding()

    @property
    def context_length(self) -> int:
        return self.layout.context_length

    def encode(self, text: str) -> Tokens:
        """BOS, the cleaned text's BPE tokens (the first ``context_length - 2`` of them), EOS, padding."""
        n = self.layout.context_length
        body = self._tok.encode(clean(text).replace(YPOGEGRAMMENI, " "), add_special_tokens=False).ids
        truncated = len(body) > n - 2
        ids = [self.layout.bos_id, *body[: n - 2], self.layout.eos_id]
        out = np.full(n, self.layout.pad_id, dtype=np.int64)
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

    def __init__(self, tower: TowerSession, tokenizer: ClipTokenizer, model_id: str) -> None:
        self.tower, self.tokenizer, self.model_id = tower, tokenizer, model_id

    def embed(self, text: str) -> Embedding:
        t0 = time.perf_counter()
        tokens = self.tokenizer.encode(check_text(text))
        t1 = time.perf_counter()
        unit, norms = self.tower.embed(tokens.ids[None])
        t2 = time.perf_counter()
        return Embedding(
            vector=unit[0],
            norm=float(norms[0]),
            model=self.model_id,
            tower=self.tower.spec.name,
            tokens=tokens.count,
            truncated=tokens.truncated,
            timings=Timings(tokenize_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3),
        )
