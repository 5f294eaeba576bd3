"""Zero-shot tags (layer/tags.py): the nearest labels of the model's vocabulary, best first, from the label
vectors the build wrote (tests/layer/convert/test_labels.py checks those are the fp32 text tower's)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from layer.errors import ModelDirError
from layer.manifest import LABELS_FILE, LABELS_NAMES_FILE, TagSpec
from layer.tags import Tag, Tagger


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def tagger(n: int = 50, dim: int = 512, top_k: int = 5, seed: int = 0) -> Tagger:
    spec = TagSpec(file=LABELS_FILE, names_file=LABELS_NAMES_FILE, prompt="a photo of a {}.", count=n, top_k=top_k)
    return Tagger([f"label {i}" for i in range(n)], unit(np.random.default_rng(seed), n, dim), spec)


def test_the_tags_are_the_k_labels_of_highest_cosine_best_first() -> None:
    t = tagger()
    image = unit(np.random.default_rng(1), 1, 512)[0]
    got = t.tag(image)
    scores = t.vectors @ image
    expected = np.argsort(-scores)[:5]
    assert [g.label for g in got] == [f"label {i}" for i in expected]
    assert [g.score for g in got] == [round(float(scores[i]), 4) for i in expected]
    assert all(a.score >= b.score for a, b in itertools.pairwise(got))
    assert len(t.tag(image, 2)) == 2 and t.tag(image, 0) == () and len(t.tag(image, 999)) == 50


def test_a_label_tags_its_own_vector_first_with_score_one() -> None:
    t = tagger()
    assert t.tag(t.vectors[7])[0] == Tag("label 7", 1.0)
    np.testing.assert_array_equal(t.vector("label 7"), t.vectors[7])
    assert t.vector("not a label") is None


def test_load_reads_the_build_files_and_refuses_what_does_not_match(tmp_path: Path) -> None:
    t = tagger(n=3, dim=8)
    np.save(tmp_path / LABELS_FILE, t.vectors)
    (tmp_path / LABELS_NAMES_FILE).write_text(json.dumps({"prompt": t.spec.prompt, "labels": t.labels}))
    loaded = Tagger.load(tmp_path, t.spec, 8)
    assert loaded.labels == t.labels and np.array_equal(loaded.vectors, t.vectors)
    with pytest.raises(ModelDirError, match="dimension 8, the model's is 512"):
        Tagger.load(tmp_path, t.spec, 512)
    (tmp_path / LABELS_NAMES_FILE).write_text(json.dumps({"labels": t.labels[:2]}))
    with pytest.raises(ModelDirError, match="2 labels but label vectors of shape"):
        Tagger.load(tmp_path, t.spec, 8)
    (tmp_path / LABELS_FILE).unlink()
    with pytest.raises(ModelDirError, match="cannot be read"):
        Tagger.load(tmp_path, t.spec, 8)
