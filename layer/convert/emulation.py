"""Run the engine on CPUs this machine does not have, with QEMU's user-mode emulators.

- x86-64 CPU models (``qemu-x86_64-static -cpu EPYC-Milan``): this interpreter and venv, under the emulator.
  QEMU's TCG emulates AVX2 but no AVX-512, so only the AVX2 path is reachable this way.
- arm64 CPU models (``qemu-aarch64-static -cpu neoverse-n1``): a Debian arm64 root (``debootstrap
  --foreign``: download and unpack only, so no arm64 binary runs during set-up) with aarch64 wheels of the
  engine's three packages at this venv's versions, entered with ``chroot`` (needs root).

Either way the emulated process sees a ``/proc/cpuinfo`` written for the emulated CPU (``-L`` prefix for
x86, a file in the root for arm64): onnxruntime's cpuinfo library reads it (and segfaults on the host's
x86 one), and so does the engine's own detection (``layer.cpu``). The instructions the kernels execute are
decided by CPUID / the auxiliary vector, which QEMU sets from ``-cpu``.
"""

from __future__ import annotations

import fcntl
import filecmp
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import layer

ENGINE_PACKAGES = ("onnxruntime", "numpy", "pillow")
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("CLIP_LAMBDA_DEBIAN_MIRROR", "http://deb.debian.org/debian")
QEMU_WARNING = "TCG doesn't support requested feature"


class EmulationUnavailable(RuntimeError):
    """This machine cannot run that CPU (a missing tool, no root, another host architecture)."""


def cache_dir() -> Path:
    base = os.environ.get("CLIP_LAMBDA_EMULATION_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip-lambda" / "emulation"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EmulationUnavailable(f"{name} not found (apt-get install qemu-user-static debootstrap)")
    return path


def _engine_sources() -> Path:
    """The engine package (``layer`` without its build half) to copy into a foreign root."""
    return Path(layer.__file__).parent


@dataclass(frozen=True)
class Run:
    """One process to start: argv, environment, and the directory that stands for ``/`` inside it."""

    argv: list[str]  # ends with "-m": the caller appends the module and its arguments
    env: dict[str, str]
    stage: Path  # where the model files and pixels must be placed
    stage_in_guest: str  # the same directory as the emulated process sees it


def _write_fake_system(root: Path, cpuinfo: str, cpus: int = 2) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo)
    sysdir = root / "sys" / "devices" / "system" / "cpu"
    sysdir.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (sysdir / name).write_text(f"0-{cpus - 1}\n")


def x86_run(qemu_cpu: str, cpuinfo: str, workdir: Path) -> Run:
    """This venv's interpreter under ``qemu-x86_64-static -cpu MODEL``; ``-L`` lends it a fake /proc/cpuinfo
    (QEMU looks a path up under the prefix first, then on the host)."""
    if platform.machine() != "x86_64":
        raise EmulationUnavailable(f"x86-64 emulation needs an x86-64 host interpreter (this is {platform.machine()})")
    qemu = _tool("qemu-x86_64-static")
    prefix = workdir / "prefix"
    _write_fake_system(prefix, cpuinfo)
    stage = workdir / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    repo = str(_engine_sources().parent)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": repo,
        "HOME": str(workdir),
        "OMP_NUM_THREADS": "1",
    }
    argv = [qemu, "-L", str(prefix), "-cpu", qemu_cpu, sys.executable, "-m"]
    return Run(argv=argv, env=env, stage=stage, stage_in_guest=str(stage))


class Arm64Root:
    """A Debian arm64 root with Python 3.11 and aarch64 wheels of onnxruntime, numpy and pillow."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / f"arm64-{DEBIAN_SUITE}"

    @property
    def site(self) -> Path:
        return self.path / "opt" / "site"

    def _versions(self) -> dict[str, str]:
        return {name: metadata.version(name) for name in ENGINE_PACKAGES}

    @classmethod
    @contextmanager
    def locked(cls, path: Path | None = None) -> Iterator[Arm64Root]:
        """The root, held for this process alone: the fake /proc/cpuinfo, the engine copy and the staged
        model are the root's, so two builds (or a build and the tests) take turns."""
        root = cls(path)
        root.path.parent.mkdir(parents=True, exist_ok=True)
        with (root.path.parent / f"{root.path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield root

    def ensure(self) -> Arm64Root:
        """Create (once) and return the root; raises ``EmulationUnavailable`` when this machine cannot."""
        if platform.machine() != "x86_64" and platform.machine() != "aarch64":
            raise EmulationUnavailable(f"no arm64 emulation set-up for a {platform.machine()} host")
        if os.geteuid() != 0:
            raise EmulationUnavailable("the arm64 root is entered with chroot, which needs root")
        qemu = _tool("qemu-aarch64-static")
        marker = self.path / ".clip-lambda-root"
        if not marker.exists():
            _tool("debootstrap")
            _tool("dpkg-deb")
            self._debootstrap()
            marker.write_text(DEBIAN_SUITE + "\n")
        inside = self.path / "usr" / "bin" / "qemu-aarch64-static"
        if not inside.exists() or not filecmp.cmp(qemu, inside, shallow=False):
            shutil.copy2(qemu, inside)
        self._wheels()
        return self

    def _debootstrap(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # --foreign: download and unpack the base system without running any arm64 program; the packages
        # Python needs are then unpacked too (dpkg-deb -x): configuring them (byte-compiling) is not needed.
        cmd = [
            "debootstrap",
            "--foreign",
            "--arch=arm64",
            "--variant=minbase",
            "--include=python3",
            DEBIAN_SUITE,
            str(self.path),
            DEBIAN_MIRROR,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1200)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise EmulationUnavailable(f"debootstrap --arch=arm64 failed:\n{tail}")
        for deb in sorted((self.path / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(self.path)], check=True, timeout=300)
        if not (self.path / "usr" / "bin" / "python3.11").exists():
            raise EmulationUnavailable("the arm64 root has no /usr/bin/python3.11 after unpacking")

    def _wheels(self) -> None:
        """aarch64 wheels of this venv's engine package versions, unpacked into /opt/site of the root."""
        versions = self._versions()
        stamp = self.site / ".versions"
        wanted = " ".join(f"{k}=={v}" for k, v in sorted(versions.items()))
        if stamp.exists() and stamp.read_text().strip() == wanted:
            return
        wheels = self.path.parent / "arm64-wheels"
        shutil.rmtree(wheels, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--platform",
            "manylinux_2_28_aarch64",
            "--python-version",
            "3.11",
            "--only-binary=:all:",
            "--dest",
            str(wheels),
            *wanted.split(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise EmulationUnavailable(f"pip download of aarch64 wheels failed:\n{tail}")
        shutil.rmtree(self.site, ignore_errors=True)
        self.site.mkdir(parents=True)
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(self.site)
        # Executable bits are not kept by zipfile: shared objects need none, but keep them readable.
        stamp.write_text(wanted + "\n")

    def run(self, qemu_cpu: str, cpuinfo: str) -> Run:
        """chroot + ``qemu-aarch64-static -cpu MODEL`` (no binfmt registration needed: QEMU is the program)."""
        _write_fake_system(self.path, cpuinfo)
        engine = self.path / "opt" / "engine"
        shutil.rmtree(engine, ignore_errors=True)
        shutil.copytree(
            _engine_sources(), engine / "layer", ignore=shutil.ignore_patterns("build", "__pycache__", "*.pyc")
        )
        stage = self.path / "opt" / "run"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        # Paths inside the root (HOME: onnxruntime writes a telemetry id there).
        # The guest's own /tmp, inside the root: not a shared temporary directory of this machine.
        guest_tmp = "/tmp"  # noqa: S108  # nosec B108
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/opt/engine:/opt/site", "HOME": guest_tmp, "LANG": "C.UTF-8"}
        argv = [
            _tool("chroot"),
            str(self.path),
            "/usr/bin/qemu-aarch64-static",
            "-cpu",
            qemu_cpu,
            "/usr/bin/python3.11",
            "-m",
        ]
        return Run(argv=argv, env=env, stage=stage, stage_in_guest="/opt/run")


def link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
