"""Helpers shared by benchmarks: the meta block, JSON output, REPORT.md sections."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def meta(seed: int | None = None, **extra) -> dict:
    import numpy
    import torch

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        sha, dirty = "unknown", False
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"git_sha": sha, "git_dirty": dirty, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "seed": seed, **extra}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def update_report_section(name: str, markdown: str) -> None:
    """Replace the ``<!-- name:begin -->...<!-- name:end -->`` block of results/REPORT.md."""
    report = RESULTS / "REPORT.md"
    text = report.read_text() if report.exists() else "# terse benchmark report\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    report.write_text(text)


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), wall seconds of that one call)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def fastest_with_result(fn, *args, repeats: int = 3, **kwargs):
    """(result, seconds of the fastest of ``repeats`` calls): one call's time is at the mercy of
    whatever else the shared machine does in that instant."""
    best = float("inf")
    for _ in range(repeats):
        out, seconds = timed(fn, *args, **kwargs)
        best = min(best, seconds)
    return out, best


def fastest(fn, *args, repeats: int = 3, warmup: int = 0) -> float:
    """Seconds of the fastest of ``repeats`` calls, after ``warmup`` untimed ones (short calls:
    the first ones pay one-off allocation and caching costs)."""
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)
