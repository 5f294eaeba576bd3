"""Any CLIP checkpoint from a local ``save_pretrained`` directory: the published geometries (ViT-B/16, ViT-L/14
at 768-d, ViT-L/14-336 at 336 px, LAION's GELU flavour), with seeded random weights at 2 layers (the Hub is
out of reach; the widths, patch, image size and projection are the named model's). Each builds with its own
preprocessor config, equals HF's fp32 features, and B/16 and L/14 run through the local stack: upload →
DynamoDB item → vector index → search, at their own dimension."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.local.moto_stack import MotoStack, StackNames
from infra.local.poller import SqsPoller
from infra.local.rie import LocalFunction
from layer import Embedder
from layer.manifest import Manifest
from tests.conftest import CACHE, ROOT, _locked, build_key, cached_build
from tests.handler.helpers import http_event
from tests.imaging import encode, photo_bytes, resized_photo
from tests.integration.conftest import cli_embeddings, cosine, items_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LAYERS = 2
DIMS = {"ViT-B-16": 512, "ViT-L-14": 768, "ViT-L-14-336": 768, "ViT-B-32-laion": 512}
SIZES = {"ViT-B-16": 224, "ViT-L-14": 224, "ViT-L-14-336": 336, "ViT-B-32-laion": 224}
THROUGH_THE_STACK = ("ViT-B-16", "ViT-L-14")


def checkpoint(arch: str) -> Path:
    from bench.checkpoints import write_checkpoint

    code = (ROOT / "bench" / "checkpoints.py").read_text()
    out = CACHE / f"ckpt-{arch}-{build_key(ROOT, arch, code)}"
    with _locked(f"ckpt-{arch}"):
        if not (out / "config.json").exists():
            write_checkpoint(out, arch, seed=11, layers=LAYERS)
    return out


def built(arch: str) -> Path:
    # Fidelity and the stack here; the CPU paths are gated by the other builds' tests.
    return cached_build(f"arch-{arch}", str(checkpoint(arch)), "off")


@pytest.mark.parametrize("arch", list(DIMS))
def test_the_build_follows_the_checkpoint(arch: str) -> None:
    model = built(arch)
    m = Manifest.read(model)
    assert m.dim == DIMS[arch] and {t.dim for t in m.towers.values()} == {DIMS[arch]}
    assert m.gated and set(m.towers) == {"image", "text"}
    assert m.image.input["shape"] == ["N", 3, SIZES[arch], SIZES[arch]]
    pre = json.loads((model / "preprocessor_config.json").read_text())
    assert pre["crop_size"] == {"height": SIZES[arch], "width": SIZES[arch]}
    engine = Embedder.from_dir(model, text=True)
    assert engine.dim == DIMS[arch] and engine.self_check is not None and engine.self_check.passed
    assert engine.embed_one(photo_bytes()["china.jpg"]).vector.shape == (DIMS[arch],)
    assert engine.embed_text("a photo of a cat").vector.shape == (DIMS[arch],)


@pytest.mark.parametrize("arch", list(DIMS))
def test_fp32_equals_hf_clip_features(arch: str) -> None:
    """Our preprocessing and fp32 export against ``CLIPImageProcessor`` + ``CLIPModel.get_image_features`` /
    ``get_text_features`` of the same directory, L2-normalized (atol 1e-3, the reference contract)."""
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    from layer.convert.calibration import calibration_texts
    from layer.convert.tokenizer import encode as tokenize

    model, ckpt = built(arch), checkpoint(arch)
    ours = Embedder.from_dir(model, precision="fp32", fast_jpeg=False, text=True)
    hf = CLIPModel.from_pretrained(ckpt, attn_implementation="eager").eval()
    processor = CLIPImageProcessor.from_pretrained(ckpt)
    photos = [photo_bytes()["china.jpg"], photo_bytes()["flower.jpg"], encode(resized_photo((300, 500)))]
    import io

    pixels = processor(images=[Image.open(io.BytesIO(p)).convert("RGB") for p in photos], return_tensors="pt")
    with torch.no_grad():
        ref = hf.get_image_features(pixel_values=pixels["pixel_values"])
        ref = getattr(ref, "pooler_output", ref).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = np.stack([ours.embed_one(p).vector for p in photos])
    assert np.allclose(got, ref, atol=1e-3), np.abs(got - ref).max()
    texts = [t for _, t in calibration_texts()][:6]
    spec = Manifest.read(model).text
    assert spec is not None and spec.tokens is not None
    ids = tokenize(model / spec.tokens.file, texts, spec.tokens)
    with torch.no_grad():
        tref = hf.get_text_features(input_ids=torch.from_numpy(ids))
        tref = getattr(tref, "pooler_output", tref).numpy()
    tref /= np.linalg.norm(tref, axis=1, keepdims=True)
    tgot = np.stack([ours.embed_text(t).vector for t in texts])
    assert np.allclose(tgot, tref, atol=1e-3), np.abs(tgot - tref).max()


# --- through the local stack --------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=THROUGH_THE_STACK)
def arch_stack(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    arch: str = request.param
    model = built(arch)
    dim = Manifest.read(model).dim
    with MotoStack(names=StackNames(visibility_timeout=3, max_receive_count=3, dimension=dim)).start() as stack:
        sqs = stack.client("sqs")
        while msgs := sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1).get("Messages"):
            for m in msgs:  # the s3:TestEvent of the notification set-up
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
        env = stack.function_env(MODEL_DIR=str(model))
        with (
            LocalFunction("handler.s3.lambda_handler", env=env, name=f"s3-{arch}").start() as s3_fn,
            LocalFunction("handler.api.lambda_handler", env=env, name=f"api-{arch}").start() as api_fn,
        ):
            poller = SqsPoller(sqs, stack.queue_url, stack.queue_arn, s3_fn.invoke, wait_seconds=1)
            yield {"arch": arch, "model": model, "dim": dim, "stack": stack, "poller": poller, "api": api_fn}


def _api(fn: LocalFunction, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    payload = json.dumps(body) if body is not None else b""
    result = fn.invoke(http_event(method, path, payload, "application/json"))
    assert not result.error, result.payload
    return result.payload["statusCode"], json.loads(result.payload["body"])


def test_upload_item_index_and_search_at_the_models_dimension(arch_stack: dict[str, Any], tmp_path: Path) -> None:
    stack: MotoStack = arch_stack["stack"]
    dim, bucket = arch_stack["dim"], stack.names.bucket
    images = {"arch/china.jpg": photo_bytes()["china.jpg"], "arch/flower.jpg": photo_bytes()["flower.jpg"]}
    s3 = stack.client("s3")
    for key, data in images.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
    arch_stack["poller"].drain(timeout=300)
    items = items_under(stack, f"s3://{bucket}/arch/")
    assert set(items) == {f"s3://{bucket}/{k}" for k in images}
    files = {key: tmp_path / key.replace("/", "_") for key in images}
    for key, path in files.items():
        path.write_bytes(images[key])
    reference = cli_embeddings(arch_stack["model"], list(files.values()))
    for key, path in files.items():
        item = items[f"s3://{bucket}/{key}"]
        vec = stack.stored_vector(item)
        assert vec is not None and vec.shape == (dim,) and int(item["dim"]["N"]) == dim
        assert cosine(vec, reference[str(path)]) >= 0.99999, key
    api = arch_stack["api"]
    status, model = _api(api, "GET", "/model")
    assert status == 200 and model["dim"] == dim and model["self_check"]["passed"] is True
    import base64

    query = {"image": base64.b64encode(images["arch/flower.jpg"]).decode(), "k": 2, "prefix": "arch/"}
    status, found = _api(api, "POST", "/search", query)
    assert status == 200, found
    best = found["results"][0]
    assert best["key"] == "arch/flower.jpg" and best["score"] > 0.9999
    status, by_text = _api(api, "POST", "/search", {"text": "a flower", "k": 2, "prefix": "arch/"})
    assert status == 200 and {r["key"] for r in by_text["results"]} == set(images)
    status, texts = _api(api, "POST", "/embed/text", {"texts": ["a flower"]})
    assert status == 200 and texts["dim"] == dim and len(texts["results"][0]["embedding"]) == dim


def test_a_deployment_of_another_dimension_is_refused_at_init(arch_stack: dict[str, Any]) -> None:
    stack: MotoStack = arch_stack["stack"]
    wrong = 1024 if arch_stack["dim"] != 1024 else 512
    env = stack.function_env(MODEL_DIR=str(arch_stack["model"]), EMBEDDING_DIM=str(wrong))
    with LocalFunction("handler.api.lambda_handler", env=env, name="api-wrong-dim").start() as fn:
        result = fn.invoke(http_event("GET", "/health", b"", "application/json"))
        assert result.error
        logs = fn.logs()
    assert f"EmbeddingDimension={arch_stack['dim']}" in logs and f"{wrong}-d" in logs
