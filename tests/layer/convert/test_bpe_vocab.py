"""CLIP's BPE vocabulary (layer/convert/bpe_vocab.py): from the pinned open-clip-torch wheel, checked against
its sha256, in HF's layout; a wheel that cannot be fetched or is not the pinned one is refused with what to do.
(Token for token against open_clip's own tokenizer: test_tokenizer.py.)"""

from __future__ import annotations

import gzip
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from layer.convert import bpe_vocab
from layer.convert.bpe_vocab import MEMBER, N_MERGES, WHEEL, BpeVocab, VocabUnavailable, load_bpe

BOS, EOS = 49406, 49407  # <|startoftext|>, <|endoftext|>


def test_the_vocabulary_is_clips(bpe: BpeVocab) -> None:
    assert len(bpe.vocab) == 49408 and len(set(bpe.vocab.values())) == 49408
    assert len(bpe.merges) == N_MERGES == 48894 and bpe.merges[0] == "i n"
    assert (bpe.bos_id, bpe.eos_id) == (BOS, EOS) and max(bpe.vocab.values()) == EOS
    assert bpe.vocab["!"] == 0 and bpe.vocab["!</w>"] == 256 and bpe.vocab["in"] == 512
    # Ids every CLIP user knows: "a photo of a cat".
    assert [bpe.vocab[t] for t in ("a</w>", "photo</w>", "of</w>", "cat</w>")] == [320, 1125, 539, 2368]
    assert bpe.source["sha256"] == bpe_vocab.VOCAB_SHA256 and bpe.source["package"] == "open-clip-torch==3.3.0"


def test_vocab_json_and_merges_txt_are_in_hfs_layout(bpe: BpeVocab, tmp_path: Path) -> None:
    vocab, merges = bpe.write(tmp_path)
    assert json.loads(vocab.read_text(encoding="utf-8")) == bpe.vocab
    lines = merges.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and lines[1:] == bpe.merges


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
