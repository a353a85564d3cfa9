"""The documentation runs: every ```python block of README.md, and every docstring example
(``>>>``) in src/terse. Examples that need a large model or data are marked
``# doctest: +SKIP`` in the docstring; README blocks are all run, in a scratch folder."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

import terse

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(terse.__file__).resolve().parent


def readme_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def modules_with_examples() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = ("terse",) + path.relative_to(SRC).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_readme_has_examples():
    assert len(readme_blocks()) >= 4


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    code = readme_blocks()[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("module", modules_with_examples())
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(importlib.import_module(module)):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module} failed (output above)"
