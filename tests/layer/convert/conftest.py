"""Fixtures shared by the model build's tests."""

from __future__ import annotations

import pytest

from layer.convert.bpe_vocab import BpeVocab, load_bpe


@pytest.fixture(scope="module")
def bpe() -> BpeVocab:
    return load_bpe()
