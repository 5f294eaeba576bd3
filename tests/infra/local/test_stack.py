"""``clip-lambda local`` (infra/local/stack.py), its parts that need no running stack: ports, the model's
description, the items it prints, its options (the whole run: tests/integration/test_local.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler import item
from handler.item import ObjectMeta, StoredItem
from infra.local import stack
from infra.local.stack import PortInUse, choose_port, describe_model, format_item, port_is_free
from layer.manifest import IMAGE, Manifest, TowerSpec


@pytest.fixture
def busy() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def test_a_port_is_the_requested_one_else_the_default_else_any(busy: socket.socket, capsys) -> None:
    taken = busy.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert port_is_free(free) and not port_is_free(taken)
    assert choose_port(free, 3000, "API") == free
    assert choose_port(0, 3000, "API") == 0  # 0: the server binds a free port itself
    with pytest.raises(PortInUse, match=f"127.0.0.1:{taken} \\(API\\) is already in use"):
        choose_port(taken, 3000, "API")
    assert choose_port(None, free, "moto") == free
    assert choose_port(None, taken, "moto") == 0 and f"port {taken} is in use" in capsys.readouterr().out


def manifest(random_init: bool) -> Manifest:
    tower = TowerSpec(IMAGE, "model.onnx", "model.fp32.onnx", "pixel_values", "image_embeds", 512,
                      accuracy_gate={"cosine_min": 0.99951}, recovery={"kept_fp32": ["fc1"]})  # fmt: skip
    return Manifest(model_id="random-init/x", dim=512, towers={IMAGE: tower}, random_init=random_init)


def test_an_untrained_model_is_said_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    describe_model(Path("build/model"), manifest(random_init=False))
    out = capsys.readouterr().out
    assert "model random-init/x  (int8, dim 512; image gate min cosine 0.99951, 1 node(s) kept fp32)" in out
    assert "UNTRAINED" not in out
    describe_model(Path("build/model"), manifest(random_init=True))
    out = capsys.readouterr().out
    assert "MODEL random-init/x IS UNTRAINED" in out and stack.BANNER in out


def test_a_failure_record_is_printed_with_its_code_and_message() -> None:
    meta = ObjectMeta(bucket="b", key="photos/x.jpg", order_key="1A", etag="e")
    record = StoredItem(item.failure_item(meta, "not_an_image", "not an image: 12 bytes", "m"))
    assert format_item(meta.pk, record) == "  s3://b/photos/x.jpg\n      FAILED not_an_image: not an image: 12 bytes"


def test_the_options_default_to_the_templates_auth_and_free_ports() -> None:
    args = stack.arg_parser().parse_args([])
    assert (args.api_auth, args.port, args.moto_port, args.once, args.no_samples) == (
        "AWS_IAM",
        None,
        None,
        False,
        False,
    )
    args = stack.arg_parser().parse_args(["--no-serve", "--api-auth", "NONE", "--port", "0"])
    assert (args.once, args.api_auth, args.port) == (True, "NONE", 0)
