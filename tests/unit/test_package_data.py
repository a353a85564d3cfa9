"""Every shipped model file is in the wheel's package data (an editable install hides a miss)."""

import fnmatch
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_package_data_covers_every_shipped_model_file():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["terse.pretrained"]
    shipped = ROOT / "src" / "terse" / "pretrained"
    files = [p.relative_to(shipped).as_posix() for p in shipped.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix != ".py"]
    # fnmatch's * also crosses "/", so match segment by segment as setuptools globbing does
    def covered(path: str) -> bool:
        parts = path.split("/")
        return any(len(pat.split("/")) == len(parts) and all(fnmatch.fnmatchcase(a, b) for a, b in
                                                            zip(parts, pat.split("/"), strict=True)) for pat in patterns)

    missing = [f for f in files if not covered(f)]
    assert files and not missing, f"not in package data: {missing[:5]}"


def test_shipped_weights_stay_under_60_mb():
    shipped = ROOT / "src" / "terse" / "pretrained"
    total = sum(p.stat().st_size for p in shipped.rglob("*.safetensors"))
    assert total < 60 * 2**20, f"shipped weights are {total / 2**20:.1f} MiB"
