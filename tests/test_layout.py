"""The repository's layout.

The import graph keeps the architecture: imports go one way (tools → handler → engine), the engine stays
light enough for the Lambda image, and nothing the image ships imports build, bench or local-stack code (an
AST walk over every module, lazy imports inside functions and ``TYPE_CHECKING`` blocks included).

tests/ mirrors the packages: every module ``P/M.py`` has its tests at ``tests/P/test_M.py``, and every test
file either mirrors a module or tests a flow across modules, named in ``FLOW_TESTS`` with the reason.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = sys.stdlib_module_names

# Third-party packages each part may import (the Lambda image installs the runtime ones only).
# tokenizers and ftfy: the text tower only (CLIP's BPE, and the reference tokenizer's text cleaning)
ENGINE_PACKAGES = {"numpy", "onnxruntime", "PIL", "tokenizers", "ftfy"}
HANDLER_PACKAGES = ENGINE_PACKAGES | {"boto3", "botocore", "aws_lambda_powertools", "pydantic"}


def modules(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (ROOT / part).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # "from layer import convert" imports the subpackage
                yield node.lineno, f"{name}.{alias.name}"


def is_engine(path: Path) -> bool:
    rel = path.relative_to(ROOT).parts
    return rel[0] == "layer" and rel[1] != "convert"


def violations(files: list[Path], allowed_packages: set[str], allowed_local: tuple[str, ...]) -> list[str]:
    out = []
    for path in files:
        for line, name in imports(path):
            top = name.split(".")[0]
            if top in STDLIB or top == "__future__":
                continue
            local = top in {"layer", "handler", "infra", "bench", "tests"}
            ok = any(name == p or name.startswith(p + ".") for p in allowed_local) if local else top in allowed_packages
            forbidden_sub = name == "layer.convert" or name.startswith("layer.convert.")
            if not ok or (forbidden_sub and "layer.convert" not in allowed_local):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_the_engine_imports_only_onnxruntime_numpy_pillow_and_itself() -> None:
    files = [p for p in modules("layer") if is_engine(p)]
    assert len(files) >= 10
    assert violations(files, ENGINE_PACKAGES, ("layer",)) == []


def test_the_functions_import_only_the_runtime_packages_and_the_engine() -> None:
    files = modules("handler")
    assert violations(files, HANDLER_PACKAGES, ("layer", "handler")) == []


def test_the_model_build_never_imports_the_functions_or_the_tools() -> None:
    files = [p for p in modules("layer") if not is_engine(p)]
    assert files, "layer/convert is where the model build lives"
    bad = [v for v in violations(files, set(), ("layer",)) if " imports " in v]
    local_bad = [v for v in bad if v.split(" imports ")[1].split(".")[0] in {"handler", "infra", "bench", "tests"}]
    assert local_bad == []


def test_no_product_code_imports_the_tests() -> None:
    files = modules("layer", "handler", "infra", "bench")
    assert [v for v in violations(files, set(), ()) if v.split(" imports ")[1].startswith("tests")] == []


def test_the_tools_never_import_each_other_backwards() -> None:
    """infra (image, local stack, CI) does not import the benchmarks; the benchmarks may drive the stack."""
    bad = [v for v in violations(modules("infra"), set(), ()) if v.split(" imports ")[1].startswith("bench")]
    assert bad == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import boto3", ["layer/x.py:1 imports boto3"]),
        (
            "from layer.convert import quantize",
            ["layer/x.py:1 imports layer.convert", "layer/x.py:1 imports layer.convert.quantize"],
        ),
        ("def f():\n    import handler.api", ["layer/x.py:2 imports handler.api"]),
        ("from . import convert", ["layer/x.py:1 imports layer.convert"]),
        ("import json\nfrom layer import limits\nimport numpy", []),
    ],
)
def test_the_rule_catches_what_it_should(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: list[str]
) -> None:
    """The checker itself: a forbidden import, a lazy one inside a function, a relative one."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "x.py").write_text(source + "\n")
    assert violations([tmp_path / "layer" / "x.py"], ENGINE_PACKAGES, ("layer",)) == expected


# --------------------------------------------------------------------------------- tests/ mirrors the packages
PACKAGES = ("layer", "handler", "infra", "bench")
# Test files (or folders: a trailing "/") about a flow across modules rather than one module, and why.
FLOW_TESTS = {
    "tests/integration/": "the local stack end to end: moto, both functions under the RIE, the HTTP and SQS fronts",
    "tests/container/": "the Lambda image, sam build/invoke and template.yaml, under Docker; the scanners",
    "tests/fuzz/": "fuzzed images through the engine and the API function",
    "tests/test_harness.py": "the test harness itself (tests/conftest.py)",
    "tests/test_layout.py": "the repository's layout: its import graph and this mirror",
    "tests/test_docs.py": "the README and docs/: every marked figure is its results file's, every link lands",
    "tests/handler/test_api_text_search.py": "the API's text and search routes: schemas, engine and a fake index",
    "tests/handler/test_fuzz_events.py": "fuzzed events and requests through both functions",
    "tests/handler/test_tags.py": "zero-shot tags through both functions: the item, the index, /embed, /search, /model",
    "tests/handler/test_tracing.py": "tracing on and off: the settings' rule, the provider, both functions' imports",
    "tests/layer/test_fidelity.py": "the engine against HF's CLIP and fastembed on a checkpoint",
    "tests/layer/test_memory.py": "the largest images embedded in a process of the default memory",
}


def product_modules(root: Path) -> list[Path]:
    """Every module of the packages (``__init__.py`` and ``__main__.py`` aside), relative to ``root``."""
    return sorted(
        p.relative_to(root)
        for part in PACKAGES
        for p in (root / part).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    )


def mirror(module: Path) -> Path:
    """``P/M.py`` → ``tests/P/test_M.py``."""
    return Path("tests", *module.parent.parts, f"test_{module.name}")


def missing_tests(root: Path) -> list[str]:
    return [str(mirror(m)) for m in product_modules(root) if not (root / mirror(m)).is_file()]


def misplaced_tests(root: Path) -> list[str]:
    """Test files that mirror no module and are not named as flow tests."""
    mirrors = {mirror(m) for m in product_modules(root)}
    out = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        rel = path.relative_to(root)
        if rel in mirrors or any(str(rel) == f or (f.endswith("/") and str(rel).startswith(f)) for f in FLOW_TESTS):
            continue
        out.append(str(rel))
    return out


def test_every_module_has_its_mirrored_test_file() -> None:
    assert len(product_modules(ROOT)) >= 80
    missing = missing_tests(ROOT)
    assert missing == [], "modules without their tests/P/test_M.py:\n" + "\n".join(missing)


def test_every_test_file_mirrors_a_module_or_is_a_named_flow_test() -> None:
    misplaced = misplaced_tests(ROOT)
    assert misplaced == [], (
        "test files that mirror no module (rename to tests/P/test_M.py, or add to FLOW_TESTS with why):\n"
        + "\n".join(misplaced)
    )
    for entry, why in FLOW_TESTS.items():
        assert (ROOT / entry).exists() and why, f"FLOW_TESTS names {entry}, which does not exist"


def test_the_mirror_rule_catches_a_missing_and_a_misplaced_test(tmp_path: Path) -> None:
    for rel in ("layer/__init__.py", "layer/decode.py", "layer/__main__.py", "layer/convert/__init__.py",
                "layer/convert/gate.py", "bench/run.py", "tests/layer/test_decode.py", "tests/layer/test_decoder.py",
                "tests/layer/helpers.py", "tests/integration/test_flow.py", "tests/test_harness.py"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert missing_tests(tmp_path) == ["tests/bench/test_run.py", "tests/layer/convert/test_gate.py"]
    assert misplaced_tests(tmp_path) == ["tests/layer/test_decoder.py"]  # helpers and flow tests are not
