"""Nothing in slimflow executes data: no eval/exec, YAML only through safe loaders, and every
torch.load with weights_only=True (a pickle in a checkpoint could otherwise run code)."""
import ast
from pathlib import Path

import pytest

from conftest import REPO

SOURCES = sorted(p for folder in ("pipeline_lib", "workflow/scripts", "benchmarks")
                 for p in (REPO / folder).rglob("*.py"))


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def violations(path: Path) -> list[str]:
    found = []
    for call, name in _calls(path):
        where = f"{path.name}:{call.lineno}"
        keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        if name in ("eval", "exec", "compile", "pickle.load", "pickle.loads", "yaml.unsafe_load", "yaml.full_load"):
            found.append(f"{where}: {name}")
        elif name == "yaml.load" and "SafeLoader" not in keywords.get("Loader", ""):
            found.append(f"{where}: yaml.load without a SafeLoader")
        elif name == "torch.load" and keywords.get("weights_only") != "True":
            found.append(f"{where}: torch.load without weights_only=True")
    return found


def test_the_scan_sees_the_package():
    assert len(SOURCES) > 20
    assert any(name == "torch.load" for p in SOURCES for _, name in _calls(p))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_execution_from_data(path):
    assert violations(path) == []


def test_the_scan_catches_each_pattern(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, yaml, pickle\ntorch.load('x')\ntorch.load('x', weights_only=False)\n"
                   "yaml.load(open('c'))\neval('1')\npickle.loads(b'')\nyaml.load(s, Loader=yaml.SafeLoader)\n")
    found = [line.split(": ", 1)[1] for line in violations(bad)]
    assert found == ["torch.load without weights_only=True", "torch.load without weights_only=True",
                     "yaml.load without a SafeLoader", "eval", "pickle.loads"]

