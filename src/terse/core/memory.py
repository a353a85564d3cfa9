"""Keep freed memory for reuse instead of handing it back to the kernel.

glibc serves every allocation above a (dynamic) threshold with fresh ``mmap`` pages and
returns freed heap tops to the kernel, so each multi-megabyte tensor of a codec call is
page-faulted and zeroed again on the next call. Whole 16x WaLLoC files on Kodak
(``benchmarks/bench_walloc_parallel.py``, subprocesses): one run one after the other measured
18.5 / 8.9 MP/s compress / decompress with this, 14.7 / 7.4 without; the later 3-round measurement
(fastest round of each setting) found no difference (19.0 / 9.3 vs 18.9 / 9.4), so the gain is
not established on this machine. The cost is that the process keeps its
peak heap until it exits, as PyTorch inference servers do with jemalloc or tcmalloc.
``TERSE_KEEP_FREED_MEMORY=0`` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed: blocks up to 32 MB come from the heap
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


@cache
def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; False where it is not glibc or the user opted out."""
    if os.environ.get("TERSE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    return all(mallopt(option, value) == 1 for option, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
