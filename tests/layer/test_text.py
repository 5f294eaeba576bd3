"""The engine's text half (layer/text.py) on the tests' built model directory: open_clip's cleaning, token ids
laid out as the manifest says (BOS and EOS by id, never matched in the text, truncation to the context), unit
vectors that depend on their text only, the text tower loaded only when asked, and the engine's refusals.
(The token-for-token comparison with open_clip on a corpus is tests/layer/convert/test_tokenizer.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layer.cpu import CpuInfo, probe_u8s8
from layer.embedder import Embedder
from layer.errors import EmptyText, ModelDirError, TextError, TextTooLong
from layer.manifest import Manifest, TokenLayout
from layer.settings import EngineSettings
from layer.text import ClipTokenizer, TextEncoder, check_text, clean
from layer.tower import TowerSession

TEXTS = ["a photo of a cat", "A RED Bicycle,   leaning on a wall!", "café — naïve façade 🚲", "x" * 300]


@pytest.fixture(scope="module")
def layout(model_dir: Path) -> TokenLayout:
    text = Manifest.read(model_dir).text
    assert text is not None and text.tokens is not None
    return text.tokens


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path, layout: TokenLayout) -> ClipTokenizer:
    return ClipTokenizer(model_dir / layout.file, layout)


@pytest.fixture(scope="module")
def vocab(model_dir: Path, layout: TokenLayout) -> dict[str, int]:
    """CLIP's BPE vocabulary (word-final tokens end in ``</w>``), straight from tokenizer.json."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / layout.file)).get_vocab()


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Embedder:
    return Embedder.from_dir(model_dir, threads=1, text=True)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("A RED Bicycle", "a red bicycle"),  # lower case
        ("  tabs\tand\nnewlines \r\n  runs  ", "tabs and newlines runs"),  # whitespace runs to one space, trimmed
        ("fish &amp; chips", "fish & chips"),  # HTML entities
        ("fish &amp;amp; chips", "fish & chips"),  # unescaped twice
        ("cafÃ© ﬁnal", "café final"),  # ftfy: mojibake and ligatures
        ("Ｆｕｌｌ", "full"),  # ftfy: full-width letters
    ],
)
def test_clean_is_open_clips(text: str, cleaned: str) -> None:
    assert clean(text) == cleaned


def test_tokens_are_bos_the_bpe_words_eos_then_padding(
    tokenizer: ClipTokenizer, vocab: dict[str, int], layout: TokenLayout
) -> None:
    got = tokenizer.encode("a photo of a cat")
    words = [vocab[f"{w}</w>"] for w in ("a", "photo", "of", "a", "cat")]
    assert got.ids.tolist() == [layout.bos_id, *words, layout.eos_id] + [layout.pad_id] * (77 - 7)
    assert (got.count, got.truncated, got.ids.dtype, tokenizer.context_length) == (7, False, np.int64, 77)


def test_the_text_is_cleaned_before_bpe(tokenizer: ClipTokenizer) -> None:
    assert np.array_equal(tokenizer.encode("  A  CAT &amp;amp; A\tDOG ").ids, tokenizer.encode("a cat & a dog").ids)


def test_special_tokens_typed_in_the_text_are_text(tokenizer: ClipTokenizer, layout: TokenLayout) -> None:
    """``<|endoftext|>`` in a query neither ends it nor adds an EOS: only the ids the tokenizer adds are special."""
    for typed in ("a cat <|endoftext|> a dog", "<|startoftext|>a cat", "a cat<|endoftext|>"):
        got = tokenizer.encode(typed)
        body = got.ids[1 : got.count - 1].tolist()
        assert layout.bos_id not in body and layout.eos_id not in body, typed
        assert got.ids[0] == layout.bos_id and got.ids[got.count - 1] == layout.eos_id
        assert got.count > tokenizer.encode(typed.replace("<|endoftext|>", "").replace("<|startoftext|>", "")).count


def test_a_long_text_keeps_its_first_context_minus_two_tokens(
    tokenizer: ClipTokenizer, vocab: dict[str, int], layout: TokenLayout
) -> None:
    cat = vocab["cat</w>"]
    fits = tokenizer.encode(" ".join(["cat"] * 75))
    assert (fits.count, fits.truncated) == (77, False)
    assert fits.ids.tolist() == [layout.bos_id, *[cat] * 75, layout.eos_id]
    for n in (76, 200):
        cut = tokenizer.encode(" ".join(["cat"] * n))
        assert (cut.count, cut.truncated) == (77, True)
        assert np.array_equal(cut.ids, fits.ids)  # the first 75, then EOS


def test_the_layout_decides_the_ids_and_the_context(model_dir: Path, vocab: dict[str, int]) -> None:
    small = ClipTokenizer(model_dir / "tokenizer.json", TokenLayout(context_length=6, bos_id=1, eos_id=2, pad_id=0))
    assert small.context_length == 6
    a, cat = vocab["a</w>"], vocab["cat</w>"]
    assert small.encode("a cat").ids.tolist() == [1, a, cat, 2, 0, 0]
    long = small.encode("a cat a cat a")
    assert long.ids.tolist() == [1, a, cat, a, cat, 2] and long.truncated


def test_a_tokenizer_that_matches_special_tokens_is_refused(model_dir: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    older = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    older.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    older.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ModelDirError, match=r"special tokens.*rebuild"):
        ClipTokenizer(tmp_path / "tokenizer.json")


def test_a_broken_tokenizer_file_is_a_model_dir_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelDirError, match=r"not a tokenizer\.json"):
        ClipTokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(ModelDirError, match=r"not a tokenizer\.json"):
        ClipTokenizer(tmp_path / "absent.json")


def test_the_text_encoder_embeds_the_tokenizers_ids_with_its_tower(model_dir: Path, tokenizer: ClipTokenizer) -> None:
    spec = Manifest.read(model_dir).text
    assert spec is not None
    cpu = CpuInfo.detect()
    tower = TowerSession.load(
        model_dir, spec, precision="int8", cpu=cpu, engine=EngineSettings(), threads=1, probe=probe_u8s8(cpu.arch)
    )
    encoder = TextEncoder(tower, tokenizer, "some-model")
    got = encoder.embed("A photo of a CAT")
    unit, norms = tower.embed(tokenizer.encode("a photo of a cat").ids[None])
    assert np.array_equal(got.vector, unit[0]) and got.norm == pytest.approx(float(norms[0]))
    assert (got.model, got.tokens, got.truncated, got.dim) == ("some-model", 7, False, 512)
    assert got.timings.tokenize_ms > 0 and got.timings.inference_ms > 0


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
    assert check_text("x" * 1000) == "x" * 1000  # the limit itself is accepted


def test_the_text_tower_loads_only_when_asked(model_dir: Path, engine: Embedder) -> None:
    image_only = Embedder.from_dir(model_dir, threads=1, self_check=False)
    assert image_only.text is None and set(image_only.towers()) == {"image"}
    with pytest.raises(ModelDirError, match="no text tower loaded"):
        image_only.embed_text("a cat")
    assert engine.text is not None and set(engine.towers()) == {"image", "text"}
    assert engine.text.tower.path == model_dir / "text_model.onnx" and engine.text.model_id == engine.model_id
