"""The engine's text half (layer/text.py) on the tests' built model directory: token ids as HF's fast CLIP
tokenizer gives them from the same tokenizer.json, unit vectors that depend on their text only, the text
tower loaded only when asked, and the engine's refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layer.embedder import Embedder
from layer.errors import EmptyText, ModelDirError, TextError, TextTooLong
from layer.manifest import Manifest
from layer.text import ClipTokenizer, check_text

TEXTS = ["a photo of a cat", "A RED Bicycle,   leaning on a wall!", "café — naïve façade 🚲", "x" * 300]


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Embedder:
    return Embedder.from_dir(model_dir, threads=1, text=True)


def test_token_ids_are_hfs(model_dir: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    tower = Manifest.read(model_dir).text_tower
    assert tower is not None
    ours = ClipTokenizer(model_dir / tower.tokenizer, context_length=77, pad_id=tower.pad_id, eos_id=tower.eos_id)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / tower.tokenizer))
    for text in [*TEXTS, " ".join(["word"] * 100)]:
        ref = hf(text, truncation=True, max_length=77, padding="max_length")["input_ids"]
        got = ours.encode(text)
        assert got.ids.tolist() == ref, text
        assert got.ids[0] == tower.bos_id and tower.eos_id in got.ids.tolist()
        assert got.truncated == (len(hf(text)["input_ids"]) > 77)


def test_text_vectors_are_unit_and_a_function_of_their_text(engine: Embedder) -> None:
    first = [engine.embed_text(t) for t in TEXTS]
    again = [engine.embed_text(t) for t in reversed(TEXTS)][::-1]
    for a, b in zip(first, again, strict=True):
        assert a.vector.shape == (512,) and a.vector.dtype == np.float32
        assert abs(float(np.linalg.norm(a.vector)) - 1) < 1e-5 and a.norm > 0
        np.testing.assert_array_equal(a.vector, b.vector)  # one text per run: no batch-mates, no order
        assert a.model == engine.model_id
    assert len({e.vector.tobytes() for e in first}) == len(TEXTS)
    long = engine.embed_text(" ".join(["word"] * 100))
    assert (long.tokens, long.truncated) == (77, True)
    short = engine.embed_text("a cat")
    assert (short.tokens, short.truncated) == (4, False)  # <|startoftext|> a cat <|endoftext|>


@pytest.mark.parametrize(("text", "error"), [("", EmptyText), ("   \n\t", EmptyText), ("x" * 1001, TextTooLong)])
def test_refused_texts(engine: Embedder, text: str, error: type[TextError]) -> None:
    with pytest.raises(error) as info:
        engine.embed_text(text)
    assert info.value.http_status in (400, 413) and info.value.code


def test_a_text_must_be_a_string() -> None:
    with pytest.raises(TextError, match="must be a string"):
        check_text(42)


def test_the_text_tower_loads_only_when_asked(model_dir: Path) -> None:
    image_only = Embedder.from_dir(model_dir, threads=1)
    assert image_only.text is None
    with pytest.raises(ModelDirError, match="no text tower loaded"):
        image_only.embed_text("a cat")


def test_a_missing_tokenizer_is_a_model_dir_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelDirError, match=r"not a tokenizer\.json"):
        ClipTokenizer(tmp_path / "tokenizer.json")
