"""The text tower's tokenizer: CLIP's own BPE vocabulary (from the pinned open-clip-torch wheel) in HF's
``CLIPTokenizer``, saved as ``tokenizer.json``, against two references on a varied corpus.

transformers 5 has no slow (pure-Python) ``CLIPTokenizer`` any more: its ``CLIPTokenizer`` is the
``tokenizers``-backed one. The independent reference is therefore OpenAI's own algorithm, open_clip's
``SimpleTokenizer``, read from the same wheel (its ``ftfy`` import stubbed with NFC: see ``open_clip``).
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
import types
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layer.convert import bpe_vocab
from layer.convert.bpe_vocab import MEMBER, N_MERGES, WHEEL, BpeVocab, VocabUnavailable, cache_dir, load_bpe
from layer.convert.tokenizer import encode, hf_tokenizer, write_tokenizer
from tests.conftest import require

BOS, EOS = 49406, 49407
LONG = " ".join(f"word{i}" for i in range(120))  # ~240 tokens
CORPUS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "MiXeD cAsE wOrDs, ALL CAPS and lower",
    "Café crème brûlée, naïve façade, Ångström, São Paulo, Zürich",
    "e\u0301cole, cafe\u0301 (decomposed accents: NFC makes them one character)",
    "東京の夜景とネオンサイン",
    "Привет, мир! Γειά σου κόσμε",
    "مرحبا بالعالم",
    "🐱🐶 emoji party 🎉🎉🎉 👍🏽 👨\u200d👩\u200d👧",
    "price: $1,299.99 — 50% off!!! (limited time)",
    "2024-06-01 12:34:56 UTC, order #A-1093, π≈3.14159",
    "it's a dog's life, isn't it? we'll see; they've gone, I'm here, you'd know",
    "punctuation!!! ??? ... ,,, ;;; --- ___ *** ((( ))) <html> {curly} [square] ~^|\\/",
    "tabs\tand\nnewlines\r\nand   runs   of spaces",
    "\u00a0non-breaking\u2003em space\u200bzero-width",
    "   leading and trailing   ",
    "",
    "   ",
    "\t\n",
    "x",
    "1234567890",
    "hello-world_foo/bar\\baz",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "İstanbul ǅemal straße ﬁnal",
    LONG,
    "a very long caption " * 30,
]


@pytest.fixture(scope="module")
def bpe() -> BpeVocab:
    return load_bpe()


@pytest.fixture(scope="module")
def tokenizer_json(bpe: BpeVocab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer(bpe, tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def open_clip(bpe: BpeVocab, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """open_clip's ``SimpleTokenizer`` from the wheel, without installing open_clip (its package imports
    torchvision). ``ftfy.fix_text`` is stubbed with NFC, the part of it HF's tokenizer keeps; its mojibake
    repair is not in HF's tokenizer, so the corpus holds no mojibake. (``bpe``: the wheel is fetched.)"""
    require("torch")  # open_clip's tokenizer module imports it
    folder = tmp_path_factory.mktemp("open_clip")
    with zipfile.ZipFile(cache_dir() / "open-clip" / WHEEL) as zf:
        (folder / "tokenizer.py").write_bytes(zf.read("open_clip/tokenizer.py"))
        (folder / "bpe_simple_vocab_16e6.txt.gz").write_bytes(zf.read(MEMBER))
    ftfy = types.ModuleType("ftfy")
    ftfy.fix_text = lambda text: unicodedata.normalize("NFC", text)  # type: ignore[attr-defined]
    saved = sys.modules.get("ftfy")
    sys.modules["ftfy"] = ftfy
    try:
        spec = importlib.util.spec_from_file_location("open_clip_tokenizer", folder / "tokenizer.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("ftfy", None)
        else:
            sys.modules["ftfy"] = saved
    return module.SimpleTokenizer()


def clip_layout(tokens: list[int], context: int = 77) -> list[int]:
    """<|startoftext|> tokens <|endoftext|>, truncated to the context keeping its <|endoftext|>, padded with
    <|endoftext|> (HF pads with its pad token; open_clip pads with 0, which the causal tower never reads)."""
    ids = [BOS, *tokens, EOS]
    if len(ids) > context:
        ids = [*ids[: context - 1], EOS]
    return ids + [EOS] * (context - len(ids))


def test_the_vocabulary_is_clips(bpe: BpeVocab) -> None:
    assert len(bpe.vocab) == 49408 and len(set(bpe.vocab.values())) == 49408
    assert len(bpe.merges) == N_MERGES == 48894 and bpe.merges[0] == "i n"
    assert (bpe.bos_id, bpe.eos_id) == (BOS, EOS) and max(bpe.vocab.values()) == EOS
    assert bpe.vocab["!"] == 0 and bpe.vocab["!</w>"] == 256 and bpe.vocab["in"] == 512
    # Ids every CLIP user knows: "a photo of a cat".
    assert [bpe.vocab[t] for t in ("a</w>", "photo</w>", "of</w>", "cat</w>")] == [320, 1125, 539, 2368]
    assert bpe.source["sha256"] == bpe_vocab.VOCAB_SHA256 and bpe.source["package"] == "open-clip-torch==3.3.0"


def test_vocab_json_and_merges_txt_are_in_hfs_layout(bpe: BpeVocab, tmp_path: Path) -> None:
    import json

    vocab, merges = bpe.write(tmp_path)
    assert json.loads(vocab.read_text(encoding="utf-8")) == bpe.vocab
    lines = merges.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and lines[1:] == bpe.merges


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_ids_equal_hfs_clip_tokenizer_and_open_clips(
    text: str, tokenizer_json: Path, bpe: BpeVocab, open_clip: Any
) -> None:
    ours = encode(tokenizer_json, [text])[0].tolist()
    hf = hf_tokenizer(bpe)(text, padding="max_length", truncation=True, max_length=77)["input_ids"]
    assert ours == hf
    assert ours == clip_layout(open_clip.encode(text))


def test_the_context_layout(tokenizer_json: Path) -> None:
    ids = encode(tokenizer_json, ["a photo of a cat", "", "   ", LONG])
    assert ids.dtype == np.int64 and ids.shape == (4, 77)
    assert ids[0].tolist() == clip_layout([320, 1125, 539, 320, 2368])
    assert ids[1].tolist() == ids[2].tolist() == clip_layout([])  # empty and whitespace-only: BOS, EOS, padding
    long = ids[3].tolist()  # truncation keeps BOS, the first 75 tokens and EOS
    assert long[0] == BOS and long[-1] == EOS and EOS not in long[1:-1] and BOS not in long[1:]


def test_html_entities_are_kept_as_hf_keeps_them(tokenizer_json: Path, open_clip: Any) -> None:
    """One deliberate difference from open_clip: it unescapes HTML entities (and ftfy repairs mojibake) before
    BPE; HF's tokenizer, whose ids the text tower's contract follows, does not."""
    escaped, plain = encode(tokenizer_json, ["fish &amp; chips", "fish & chips"]).tolist()
    assert clip_layout(open_clip.encode("fish &amp; chips")) == plain  # open_clip reads "&amp;" as "&"
    assert escaped != plain  # HF's tokenizer, and ours, read it as written


def test_a_tampered_vocabulary_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / WHEEL, "w") as zf:
        zf.writestr(MEMBER, gzip.compress(b"#version: 0.2\ni n\n"))
    with pytest.raises(VocabUnavailable, match="not the pinned"):
        load_bpe(tmp_path)
    (tmp_path / WHEEL).write_bytes(b"not a zip")
    with pytest.raises(VocabUnavailable, match="delete it"):
        load_bpe(tmp_path)


def test_a_failed_download_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert (
            cmd[1:5] == ["-m", "pip", "download", "--quiet"] and "--no-deps" in cmd and cmd[-1] == bpe_vocab.OPEN_CLIP
        )
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (no network)")

    monkeypatch.setattr(bpe_vocab.subprocess, "run", no_network)
    with pytest.raises(VocabUnavailable, match=r"no network.*--no-text"):
        load_bpe(tmp_path)
