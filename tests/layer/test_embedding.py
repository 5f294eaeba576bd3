"""What the engine returns (layer/embedding.py): one Embedding type for every tower, and the one L2
normalization every vector goes through."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from layer import embedding
from layer.embedding import Embedding, Timings, l2_normalize


@pytest.mark.slow
def test_l2_normalize_returns_unit_vectors_and_the_norms() -> None:
    features = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float32)
    unit, norms = l2_normalize(features)
    assert unit.dtype == np.float32 and norms.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(norms, [5.0, 0.0, 1e-3], rtol=1e-6)


@pytest.mark.slow
def test_the_embedder_normalizes_with_the_towers_function() -> None:
    from layer import embedder

    assert embedder.l2_normalize is l2_normalize


def test_raw_features_are_the_vector_times_its_norm() -> None:
    rng = np.random.default_rng(0)
    features = (rng.standard_normal((5, 512)) * rng.uniform(0.1, 30, (5, 1))).astype(np.float32)
    unit, norms = l2_normalize(features)
    assert unit.shape == features.shape and norms.shape == (5,)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit * norms[:, None], features, rtol=1e-5, atol=1e-5)
    one, norm = l2_normalize(features[0])  # a single vector too
    np.testing.assert_array_equal(one, unit[0])
    assert norm == norms[0]


def test_every_towers_embedding_is_one_type_and_its_dim_is_the_vectors() -> None:
    image = Embedding(vector=np.zeros(512, np.float32), norm=1.0, model="m", width=640, height=480, format="JPEG")
    text = Embedding(vector=np.zeros(768, np.float32), norm=2.0, model="m", tower="text", tokens=9, truncated=True)
    assert (image.dim, text.dim) == (512, 768)
    assert (image.tower, image.tokens, image.truncated) == ("image", 0, False)  # an image's defaults
    assert (text.width, text.height, text.format) == (0, 0, "unknown")  # a text's
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.norm = 3.0  # type: ignore[misc]


def test_timings_are_not_part_of_an_embeddings_identity() -> None:
    """Two embeddings of the same input compare equal however long each took (and the vector stays out of the
    repr: 512 floats in a log line)."""
    v = np.ones(2, np.float32)
    a = Embedding(vector=v, norm=1.0, model="m", timings=Timings(decode_ms=1.0, inference_ms=5.0))
    b = Embedding(vector=v, norm=1.0, model="m", timings=Timings(decode_ms=9.0))
    assert a == b and a.timings != b.timings and Timings() == Timings(0.0, 0.0, 0.0, 0.0)
    assert "vector" not in repr(a) and "norm=1.0" in repr(a)


def test_the_engine_and_the_towers_normalize_with_this_function() -> None:
    from layer import embedder, tower

    assert embedder.l2_normalize is tower.l2_normalize is embedding.l2_normalize
