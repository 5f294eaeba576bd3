"""CLIP's BPE vocabulary, offline from the hub: the original file ships inside the ``open-clip-torch`` wheel.

The hub holds no tokenizer files we can reach, but PyPI does: ``open_clip/bpe_simple_vocab_16e6.txt.gz`` is
OpenAI's file, byte for byte. The wheel is fetched once with pip (``--no-deps``: nothing of open_clip is
installed or imported), pinned by version and by the vocabulary's sha256, and kept under ``build/cache/``.
From it come ``vocab.json`` and ``merges.txt`` exactly as HF's ``CLIPTokenizer`` reads them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import layer
from layer.settings import BUILD_CACHE

OPEN_CLIP = "open-clip-torch==3.3.0"
WHEEL = "open_clip_torch-3.3.0-py3-none-any.whl"
MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"  # of the .gz file
# CLIP's vocabulary: 256 byte symbols, the same ending a word ("</w>"), 48,894 merges, 2 special tokens.
N_MERGES = 49152 - 256 - 2
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


class VocabUnavailable(RuntimeError):
    """The pinned wheel cannot be fetched, or its vocabulary is not the pinned one."""


@dataclass(frozen=True)
class BpeVocab:
    vocab: dict[str, int]  # token → id, HF's vocab.json
    merges: list[str]  # "a b" pairs in rank order, HF's merges.txt without its "#version" line
    source: dict[str, str]  # where it came from, for the manifest

    @property
    def bos_id(self) -> int:
        return self.vocab[BOS]

    @property
    def eos_id(self) -> int:
        return self.vocab[EOS]

    def write(self, folder: Path) -> tuple[Path, Path]:
        """``vocab.json`` and ``merges.txt`` in HF's layout (what ``CLIPTokenizer.from_pretrained`` reads)."""
        import json

        folder.mkdir(parents=True, exist_ok=True)
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        vocab.write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
        merges.write_text("#version: 0.2\n" + "\n".join(self.merges) + "\n", encoding="utf-8")
        return vocab, merges


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map of the 256 bytes to printable characters, in CLIP's vocabulary order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clip_vocab(bpe_gz: bytes, source: dict[str, str] | None = None) -> BpeVocab:
    """The vocabulary as CLIP builds it from the BPE file (and HF's converted vocab.json holds it)."""
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]  # line 0 is the "#version" header
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges), BOS, EOS]
    return BpeVocab({t: i for i, t in enumerate(tokens)}, merges, source or {})


def cache_dir() -> Path:
    """``$CLIP_LAMBDA_BUILD_CACHE``, else ``build/cache`` of this checkout (git-ignored, ``make clean`` empties it)."""
    given = os.environ.get(BUILD_CACHE)
    return Path(given) if given else Path(layer.__file__).resolve().parent.parent / "build" / "cache"


def _fetch_wheel(folder: Path) -> Path:
    """The wheel in ``folder``, downloaded beside it first and renamed into place, so that two builds at once
    (the test fixtures) never read a half-written file."""
    wheel = folder / WHEEL
    if wheel.exists():
        return wheel
    with tempfile.TemporaryDirectory(prefix="download-", dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
        cmd += ["--only-binary=:all:", "--dest", tmp, OPEN_CLIP]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        fetched = Path(tmp) / WHEEL
        if proc.returncode != 0 or not fetched.exists():
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
            raise VocabUnavailable(
                f"cannot fetch {OPEN_CLIP} (CLIP's BPE vocabulary) with pip: {tail or 'no wheel'}; "
                f"put {WHEEL} into {folder}, or build image-only with --no-text"
            )
        fetched.replace(wheel)
    return wheel


def load_bpe(folder: Path | None = None) -> BpeVocab:
    """CLIP's vocabulary from the pinned wheel (fetched once), checked against its sha256."""
    folder = folder or cache_dir() / "open-clip"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = _fetch_wheel(folder)
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise VocabUnavailable(f"{wheel}: no {MEMBER} ({exc}); delete it to fetch it again") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != VOCAB_SHA256:
        raise VocabUnavailable(f"{wheel}: {MEMBER} has sha256 {digest}, not the pinned {VOCAB_SHA256}")
    return clip_vocab(data, {"package": OPEN_CLIP, "file": MEMBER, "sha256": digest})
