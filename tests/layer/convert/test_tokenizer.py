"""The text tower's tokenizer: CLIP's own BPE vocabulary (from the pinned open-clip-torch wheel) in
``tokenizer.json``, run by the engine's ``layer.text.ClipTokenizer``, against the reference CLIP tokenizer,
open_clip's ``SimpleTokenizer``, token for token on a corpus of odd strings (``odd_strings``).

The reference is read from the same wheel without importing open_clip's package (which needs torchvision):
its ``tokenizer.py`` runs as it is, with the real ``ftfy``, ``regex`` and ``torch``. Two differences are by
design: the engine pads with <|endoftext|> where open_clip pads with 0 (the causal tower pools at the first
<|endoftext|> and never reads the padding), so ids are compared up to and including <|endoftext|>; and text
that spells a special token is text for the engine, where open_clip matches its own spellings
``<start_of_text>``/``<end_of_text>`` in the input. The reference for the comparisons is therefore open_clip
with that matching switched off (``reference``); a test of its own shows the difference on open_clip as it is
(``open_clip``).
"""

from __future__ import annotations

import importlib.util
import json
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import regex

from layer.convert.bpe_vocab import MEMBER, WHEEL, BpeVocab, cache_dir
from layer.convert.tokenizer import OPEN_CLIP_PATTERN, encode, write_tokenizer
from layer.manifest import TokenLayout
from layer.text import MAX_TEXT_CHARS, ClipTokenizer, check_text, clean
from tests.conftest import require
from tests.layer.convert.odd_strings import LONG_CJK, LONG_WORDS, NEWER_UNICODE, ODD_STRINGS

BOS, EOS = 49406, 49407
CONTEXT = 77


@pytest.fixture(scope="module")
def tokenizer_json(bpe: BpeVocab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer(bpe, tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def ours(tokenizer_json: Path) -> ClipTokenizer:
    return ClipTokenizer(tokenizer_json, TokenLayout())


@pytest.fixture(scope="module")
def open_clip_module(bpe: BpeVocab, tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    """open_clip's ``tokenizer.py`` from the wheel, beside its vocabulary, run as it is. (``bpe``: the wheel is
    fetched.)"""
    for name in ("ftfy", "regex", "torch"):  # what it imports
        require(name)
    folder = tmp_path_factory.mktemp("open_clip")
    with zipfile.ZipFile(cache_dir() / "open-clip" / WHEEL) as zf:
        (folder / "tokenizer.py").write_bytes(zf.read("open_clip/tokenizer.py"))
        (folder / "bpe_simple_vocab_16e6.txt.gz").write_bytes(zf.read(MEMBER))
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", folder / "tokenizer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def open_clip(open_clip_module: types.ModuleType) -> Any:
    """open_clip's ``SimpleTokenizer`` as it is: it matches ``<start_of_text>``/``<end_of_text>`` in the text."""
    return open_clip_module.SimpleTokenizer()


@pytest.fixture(scope="module")
def reference(open_clip_module: types.ModuleType) -> Any:
    """open_clip's ``SimpleTokenizer`` with its special-token matching switched off, and nothing else changed:
    its pattern without the special alternatives (same flags), and an empty BPE cache (which held them)."""
    tok = open_clip_module.SimpleTokenizer()
    specials = "|".join(tok.decoder[i] for i in tok.all_special_ids) + "|"
    assert specials == "<start_of_text>|<end_of_text>|" and tok.pat.pattern.startswith(specials)
    tok.pat = open_clip_module.re.compile(tok.pat.pattern.removeprefix(specials), tok.pat.flags)
    tok.cache = {}
    return tok


def ours_ids(tok: ClipTokenizer, text: str) -> list[int]:
    """The engine's ids up to and including <|endoftext|> (then padding)."""
    tokens = tok.encode(text)
    ids: list[int] = tokens.ids.tolist()
    assert ids[tokens.count :] == [EOS] * (CONTEXT - tokens.count)  # padded with <|endoftext|>
    return ids[: tokens.count]


def reference_ids(tok: Any, text: str) -> list[int]:
    """open_clip's ``tokenizer(texts)`` row (truncated as it truncates) up to and including its first
    <|endoftext|>, then zeros."""
    row: list[int] = tok([text])[0].tolist()
    end = row.index(EOS) + 1
    assert row[end:] == [0] * (CONTEXT - end)  # open_clip pads with 0
    return row[:end]


def report(mismatches: list[str], total: int) -> str:
    return f"{len(mismatches)} of {total} strings differ:\n" + "\n".join(mismatches)


def test_the_vocabulary_is_open_clips(bpe: BpeVocab, reference: Any) -> None:
    """Token for token, id for id, but the special tokens' spellings: HF's <|startoftext|>, open_clip's
    <start_of_text> (the engine adds them by id and never reads their spelling)."""
    spelled = {"<|startoftext|>": "<start_of_text>", "<|endoftext|>": "<end_of_text>"}
    assert {spelled.get(t, t): i for t, i in bpe.vocab.items()} == reference.encoder
    assert (reference.sot_token_id, reference.eot_token_id) == (BOS, EOS)


def test_the_corpus(open_clip: Any) -> None:
    """A few hundred strings the engine accepts (none empty or whitespace-only, none over the API's limit),
    some beyond the context, some spelling a special token."""
    assert len(ODD_STRINGS) >= 300 and len(set(ODD_STRINGS)) == len(ODD_STRINGS)
    assert all(check_text(text) == text for text in ODD_STRINGS)
    assert max(map(len, ODD_STRINGS)) <= MAX_TEXT_CHARS
    assert sum(len(open_clip.encode(text)) > CONTEXT - 2 for text in ODD_STRINGS) >= 5
    assert sum(bool({BOS, EOS} & set(open_clip.encode(text))) for text in ODD_STRINGS) >= 5  # as open_clip is


def test_every_odd_string_has_open_clips_ids(ours: ClipTokenizer, reference: Any) -> None:
    mismatches = []
    for text in ODD_STRINGS:
        mine, theirs = ours_ids(ours, text), reference_ids(reference, text)
        if mine != theirs:
            mismatches.append(f"{text!r}\n  ours:   {mine}\n  theirs: {theirs}")
    if mismatches:
        pytest.fail(report(mismatches, len(ODD_STRINGS)))


@pytest.mark.xfail(
    strict=True,
    reason="Unicode data: letters/digits in the regex package's newer tables, not yet in tokenizers' Oniguruma",
)
@pytest.mark.parametrize("text", NEWER_UNICODE, ids=[ascii(t) for t in NEWER_UNICODE])
def test_newer_unicode_letters_have_open_clips_ids(text: str, ours: ClipTokenizer, reference: Any) -> None:
    assert ours_ids(ours, text) == reference_ids(reference, text)


def test_clean_is_open_clips_clean_lower(open_clip_module: types.ModuleType) -> None:
    mismatches = []
    for text in [*ODD_STRINGS, *NEWER_UNICODE]:
        mine, theirs = clean(text), open_clip_module._clean_lower(text)
        if mine != theirs:
            mismatches.append(f"{text!r}\n  ours:   {mine!r}\n  theirs: {theirs!r}")
    if mismatches:
        pytest.fail(report(mismatches, len(ODD_STRINGS) + len(NEWER_UNICODE)))


@pytest.mark.parametrize(
    ("text", "truncated"),
    [
        ("a " * 75, False),  # exactly the context: BOS, 75 tokens, EOS
        ("a " * 76, True),  # one token over
        ("supercalifragilistic" * 20, True),  # one word of 100 tokens
        (LONG_WORDS, True),
        (LONG_CJK, True),
        ("🐱" * 80, True),
    ],
    ids=["75-tokens", "76-tokens", "one-long-word", "words", "cjk", "emoji"],
)
def test_truncation_keeps_what_open_clip_keeps(text: str, truncated: bool, ours: ClipTokenizer, reference: Any) -> None:
    """open_clip's ``tokenizer(texts)``: the first 75 tokens, then <|endoftext|> in the last place."""
    tokens = ours.encode(text)
    assert tokens.truncated is truncated is (len(reference.encode(text)) > CONTEXT - 2)
    assert tokens.count == (CONTEXT if truncated else len(reference.encode(text)) + 2)
    assert ours_ids(ours, text) == reference_ids(reference, text)
    if truncated:
        assert tokens.ids.tolist() == reference([text])[0].tolist() == [BOS, *reference.encode(text)[:75], EOS]


def test_every_long_odd_string_is_truncated_as_open_clip_truncates(ours: ClipTokenizer, reference: Any) -> None:
    long = [text for text in ODD_STRINGS if len(reference.encode(text)) > CONTEXT - 2]
    assert len(long) >= 5
    mismatches = [
        f"{text!r}: truncated {ours.encode(text).truncated}"
        for text in long
        if not ours.encode(text).truncated or ours.encode(text).ids.tolist() != reference([text])[0].tolist()
    ]
    if mismatches:
        pytest.fail(report(mismatches, len(long)))
    assert not any(ours.encode(text).truncated for text in ODD_STRINGS if text not in long)


def test_open_clip_matches_its_special_token_spellings_the_engine_does_not(
    ours: ClipTokenizer, open_clip: Any, reference: Any
) -> None:
    """The one deliberate difference in the text: open_clip's regex starts with ``<start_of_text>|
    <end_of_text>`` and its BPE cache maps them to the special ids, so a query that spells one is cut there
    (the tower pools at the first <|endoftext|>). The engine reads it as text, as the reference does."""
    text = "a photo of <end_of_text> a cat"
    cut = open_clip([text])[0].tolist()
    assert cut[:5] == [BOS, 320, 1125, 539, EOS]  # "a photo of", then open_clip's end: "a cat" is never read
    assert open_clip.encode("<start_of_text>") == [BOS] and open_clip.encode("<END_OF_TEXT>") == [EOS]
    mine = ours_ids(ours, text)
    assert mine == reference_ids(reference, text) != cut[: len(mine)]
    assert mine[0] == BOS and mine[-1] == EOS and BOS not in mine[1:] and EOS not in mine[:-1]
    assert mine[-3:-1] == [320, 2368]  # "a cat" is read
    for spelled in ("<start_of_text>", "<end_of_text>", "<|startoftext|>", "<|endoftext|>"):
        assert ours_ids(ours, spelled)[1:-1] == reference.encode(spelled)
        assert not {BOS, EOS} & set(reference.encode(spelled))


def test_hfs_special_token_spellings_are_text(ours: ClipTokenizer, open_clip: Any, tokenizer_json: Path) -> None:
    """``<|endoftext|>`` (HF's spelling) in a query keeps the words after it: open_clip as it is reads it as
    text too, and the tokenizer.json has no added tokens that the tokenizers package would match."""
    text = "a photo of <|endoftext|> a cat"
    mine = ours_ids(ours, text)
    assert len(mine) - 2 > 3  # more than "a photo of" after BOS
    assert mine[0] == BOS and mine.index(EOS) == len(mine) - 1 and BOS not in mine[1:]
    assert mine[-3:-1] == [320, 2368]
    assert mine == reference_ids(open_clip, text)
    assert json.loads(tokenizer_json.read_text(encoding="utf-8"))["added_tokens"] == []


def test_the_pre_tokenizer_is_open_clips_pattern(tokenizer_json: Path, reference: Any) -> None:
    split = json.loads(tokenizer_json.read_text(encoding="utf-8"))["pre_tokenizer"]["pretokenizers"][0]
    # the same alternatives, with open_clip's re.IGNORECASE written inline
    assert split["pattern"]["Regex"] == OPEN_CLIP_PATTERN == "(?i)" + reference.pat.pattern
    assert reference.pat.flags & regex.IGNORECASE


def test_the_context_layout(ours: ClipTokenizer, tokenizer_json: Path) -> None:
    tokens = ours.encode("a photo of a cat")
    assert tokens.ids.dtype == np.int64 and tokens.ids.shape == (CONTEXT,)
    assert (tokens.count, tokens.truncated) == (7, False)
    assert tokens.ids.tolist() == [BOS, 320, 1125, 539, 320, 2368, EOS] + [EOS] * 70
    batch = encode(tokenizer_json, ["a photo of a cat", LONG_WORDS])
    assert batch.dtype == np.int64 and batch.shape == (2, CONTEXT)
    assert batch.tolist() == [tokens.ids.tolist(), ours.encode(LONG_WORDS).ids.tolist()]
