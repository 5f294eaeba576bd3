"""The engine's settings: every environment variable it reads, with its default, and the constants that the
build, the functions and the tools share, each defined once here.

The engine reads the environment only through ``EngineSettings.from_env``; a caller that already holds its
settings (the functions' ``handler.settings``) passes them in, so nothing else looks at ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layer.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, Limits

# The model `make model` builds by default, where the build writes it (and the image copies it from), and
# where the image holds it.
DEFAULT_SOURCE = "openai/clip-vit-base-patch32"
BUILD_DIR = Path("build/model")
IMAGE_MODEL_DIR = "/opt/model"

# Where the model build keeps what it downloads (the pinned open-clip-torch wheel that holds CLIP's BPE
# vocabulary); default: build/cache of the checkout (layer.convert.bpe_vocab).
BUILD_CACHE = "CLIP_LAMBDA_BUILD_CACHE"

# Lambda grants CPU time in proportion to memory: 1,769 MB buys one vCPU's worth.
LAMBDA_MB_PER_VCPU = 1769

# Environment variables (the configuration contract: docs/operations.md#environment).
MAX_IMAGE_BYTES = "MAX_IMAGE_BYTES"
MAX_IMAGE_PIXELS = "MAX_IMAGE_PIXELS"
MAX_IMAGE_SIDE = "MAX_IMAGE_SIDE"
THREADS = "CLIP_LAMBDA_THREADS"  # intra-op threads; default: the CPU budget (layer.session.CpuBudget)
SPINNING = "CLIP_LAMBDA_SPINNING"  # "0" | "1"; default: spin unless the CPU quota is fractional
GRAPH_OPT = "CLIP_LAMBDA_GRAPH_OPT"  # "disabled" | "basic" | "extended" | "all"; default: per model and CPU
LAMBDA_MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"  # set by Lambda (and by our RIE runs): the CPU share


@dataclass(frozen=True)
class EngineSettings:
    """What the environment may change about the engine; None means "decide from the machine"."""

    limits: Limits = field(default_factory=Limits)
    threads: int | None = None
    spinning: bool | None = None
    graph_optimization: str | None = None
    lambda_memory_mb: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        env = os.environ if environ is None else environ
        spinning = env.get(SPINNING)
        memory = env.get(LAMBDA_MEMORY, "")
        threads = env.get(THREADS, "")
        return cls(
            limits=Limits(
                max_bytes=int(env.get(MAX_IMAGE_BYTES, DEFAULT_MAX_BYTES)),
                max_pixels=int(env.get(MAX_IMAGE_PIXELS, DEFAULT_MAX_PIXELS)),
                max_side=int(env.get(MAX_IMAGE_SIDE, DEFAULT_MAX_SIDE)),
            ),
            threads=int(threads) if threads.isdigit() and int(threads) > 0 else None,
            spinning=spinning == "1" if spinning in ("0", "1") else None,
            graph_optimization=env.get(GRAPH_OPT) or None,
            lambda_memory_mb=int(memory) if memory.isdigit() else None,
        )
