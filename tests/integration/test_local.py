"""``clip-lambda local`` end to end, as a user runs it: the demo (``--once``) and serve-until-Ctrl-C, each
followed by a check that nothing it started is left listening or running."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import numpy as np
import pytest

from infra.local.stack import signed_headers
from layer.convert.calibration import sample_photo_paths

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "clip-lambda-images"


def command(model_dir: Path, api_port: int, moto_port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "infra.cli", "local", "--model", str(model_dir),
            "--port", str(api_port), "--moto-port", str(moto_port), *extra]  # fmt: skip


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(needle: str) -> list[str]:
    """Live processes whose command line or environment contains ``needle`` (our own user's only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle.encode() in blob:
            program = blob.split(b"\0", 1)[0][:200]
            found.append(f"{entry.name}: {program!r}")
    return found


def assert_all_stopped(output: str, moto_port: int) -> None:
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", output)}
    assert moto_port in ports and len(ports) >= 4  # moto, two RIEs, the API front
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(listening(p) for p in ports):
        time.sleep(0.2)
    assert [p for p in ports if listening(p)] == []
    # Both RIEs and their runtimes had the moto endpoint in their environment (moto: its port, above).
    assert processes_mentioning(f"127.0.0.1:{moto_port}") == []


def bound_ports(out: str) -> tuple[int, int]:
    """(API front, moto) ports the stack printed: asked for port 0, each server bound a free one itself, so
    no other process can take a port between our choosing it and the server binding it."""
    api = re.search(r"HTTP API front on http://127\.0\.0\.1:(\d+)", out)
    moto = re.search(r"moto server \(S3, SQS, DynamoDB\) on 127\.0\.0\.1:(\d+)", out)
    assert api and moto, out
    return int(api.group(1)), int(moto.group(1))


def test_once_prints_the_items_and_the_api_call(model_dir: Path) -> None:
    proc = subprocess.run(command(model_dir, 0, 0, "--once"), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    api_port, moto_port = bound_ports(out)
    assert 0 not in (api_port, moto_port)
    assert "IS UNTRAINED (random-init" in out  # the model is labelled
    names = [p.name for p in sample_photo_paths()]
    keys = [f"samples/{n}" for n in names] + [f"samples/{Path(names[0]).stem} copy.jpg"]  # a key with a space
    for key in keys:
        block = re.search(rf"  s3://{BUCKET}/{re.escape(key)}\n(.*)\n(.*)\n", out)
        assert block, f"{key} not printed:\n{out}"
        assert re.search(r"dim 512  norm \d+\.\d+  \|embedding\| 1\.0000", block.group(1)), block.group(1)
        assert re.match(r"\s+first values \[[+-]\d\.\d{4}, ", block.group(2))
    api = re.search(r"HTTP 200 in \d+ ms: .* dim 512  norm (\d+\.\d+)  \|embedding\| (\d\.\d+)", out)
    assert api and float(api.group(1)) > 0 and abs(float(api.group(2)) - 1) < 1e-4, out
    assert "cosine to the S3 pipeline's item of the same photo: 1.0000" in out
    assert "/search  (query by text, k=5)" in out  # make run ends with a text query and a query by image
    ranked = re.search(r"query by image [^\n]*k=5\)\n  1\. s3://[^\n]*score \+(\d\.\d{4})", out)
    assert ranked and float(ranked.group(1)) > 0.9999, out  # the photo itself (or its copy) comes first
    assert f"HTTP API front on http://127.0.0.1:{api_port}" in out and "demo OK" in out
    assert_all_stopped(out, moto_port)


def test_serves_uploads_and_the_api_until_sigint(model_dir: Path) -> None:
    proc = subprocess.Popen(command(model_dir, 0, 0, "--no-samples"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True)
    reader.start()

    def wait_for(text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
                continue
            if text in seen[-1]:
                return
        raise AssertionError(f"{text!r} not printed:\n{''.join(seen)}")

    try:
        wait_for("==> serving")
        wait_for("==> gallery: http://127.0.0.1:", timeout=10)  # make run's last line: the gallery's URL
        gallery = re.search(r"==> gallery: (http://127\.0\.0\.1:\d+/)", seen[-1])
        assert gallery, seen[-1]
        with urllib.request.urlopen(gallery.group(1), timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        text = "".join(seen)
        api_port, moto_port = bound_ports(text)
        assert f"aws --endpoint-url http://127.0.0.1:{moto_port} s3 cp" in text and "boto3" in text
        # IAM auth as deployed (ApiAuth=AWS_IAM): the printed commands sign with awscurl
        assert f"awscurl --service execute-api --region us-east-1 -X POST http://127.0.0.1:{api_port}/embed" in text
        assert "infra.cli item s3://" in text

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        photo = sample_photo_paths()[0]
        s3.upload_file(str(photo), BUCKET, "photos/my photo.jpg")
        wait_for(f"s3://{BUCKET}/photos/my photo.jpg", timeout=120)
        wait_for("dim 512", timeout=5)

        url, data = f"http://127.0.0.1:{api_port}/embed", photo.read_bytes()
        unsigned = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=60)
        assert refused.value.code == 403  # unsigned: refused, as API Gateway's IAM auth does
        headers = signed_headers("POST", url, data, "image/jpeg")
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = json.loads(resp.read())
        assert resp.status == 200 and body["dim"] == 512
        assert abs(np.linalg.norm(body["embedding"]) - 1) < 1e-5

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert proc.returncode == 0, output
    assert "==> stopping" in output and "stopped moto server" in output
    assert_all_stopped(output, moto_port)
