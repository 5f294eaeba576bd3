"""The tags' vocabulary at build time (layer/convert/labels.py) and in the suite's built model: every label
prompt gated by the text tower like any other text, its vector the fp32 text tower's, the engine tagging
each image with its nearest labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layer.convert.labels import DEFAULT_LABELS, GATE_PREFIX, MAX_LABEL_BYTES, LabelsError, prompts, read_labels
from layer.embedder import Embedder
from layer.manifest import Manifest
from layer.settings import EngineSettings
from layer.tower import TowerSession
from tests.conftest import TEST_LABELS
from tests.imaging import photo_bytes


def test_the_default_vocabulary_is_a_few_hundred_distinct_everyday_labels() -> None:
    labels = read_labels(DEFAULT_LABELS)
    assert 300 <= len(labels) <= 1000 and len(set(labels)) == len(labels)
    assert {"dog", "cat", "beach", "car", "flower", "food"} <= set(labels)
    assert all(0 < len(label.encode()) <= MAX_LABEL_BYTES for label in labels)


def test_a_labels_file_is_cleaned_and_refused_when_it_cannot_be_used(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_text("# comment\n\n  red   car \ndog\ndog\n")
    assert read_labels(f) == ["red car", "dog"]
    f.write_text("# nothing\n\n")
    with pytest.raises(LabelsError, match="no labels"):
        read_labels(f)
    f.write_text("x" * (MAX_LABEL_BYTES + 1) + "\n")
    with pytest.raises(LabelsError, match=f"over {MAX_LABEL_BYTES} bytes"):
        read_labels(f)
    with pytest.raises(LabelsError):
        read_labels(tmp_path / "missing.txt")
    assert prompts(["dog"]) == ["a photo of a dog."]
    with pytest.raises(LabelsError, match=r"one \{\}"):
        prompts(["dog"], "a photo")


def test_the_cli_refuses_a_bad_labels_file_before_building(tmp_path: Path) -> None:
    from layer.convert import cli

    (tmp_path / "l.txt").write_text("\n")
    assert cli.main(["build-model", "--out", str(tmp_path / "m"), "--labels", str(tmp_path / "l.txt")]) == 2
    assert not (tmp_path / "m").exists()


def test_the_built_model_holds_the_vocabulary_gated_and_embedded_by_the_fp32_text_tower(model_dir: Path) -> None:
    manifest = Manifest.read(model_dir)
    labels = read_labels(TEST_LABELS)
    tags = manifest.tags
    assert tags is not None and tags.count == len(labels) and tags.prompt == "a photo of a {}."
    names = json.loads((model_dir / tags.names_file).read_text())
    assert names["labels"] == labels
    # Every prompt was a gate input of the text tower, which passed.
    gate = manifest.text.accuracy_gate if manifest.text else None
    assert gate is not None and gate["passed"] is True
    gated = {n for n in gate["per_input"] if n.startswith(GATE_PREFIX)}
    assert gated == {GATE_PREFIX + p for p in prompts(labels)}
    # The vectors are the fp32 text tower's, unit rows, in label order.
    vectors = np.load(model_dir / tags.file)
    assert vectors.shape == (len(labels), manifest.dim) and vectors.dtype == np.float32
    engine = Embedder.from_dir(model_dir, text=True, self_check=False)
    assert engine.text is not None and engine.tagger is not None
    fp32 = TowerSession.load(model_dir, manifest.text, precision="fp32", cpu=engine.cpu, engine=EngineSettings())
    ref = fp32.embed(np.stack([engine.text.tokenizer.encode(p).ids for p in prompts(labels)]))[0]
    np.testing.assert_allclose(vectors, ref, atol=1e-6)
    # An image's tags: the top_k labels by cosine with its vector, best first.
    emb = engine.embed_one(photo_bytes()["china.jpg"])
    scores = vectors @ emb.vector
    assert [t.label for t in emb.tags] == [labels[i] for i in np.argsort(-scores)[: tags.top_k]]
