"""Run a Python snippet as another machine would: a fresh process whose torch, oneDNN, MKL
and numba use other (equally valid) kernels, or another thread count."""

from __future__ import annotations

import os
import subprocess
import sys

OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                 "NUMBA_CPU_NAME": "generic"}


def assert_script_prints_ok(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> None:
    """Run ``script`` (which prints ``ok`` when its checks pass) with ``env`` added to ours."""
    out = subprocess.run([sys.executable, "-c", script, *args], env={**os.environ, **(env or {})},
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
