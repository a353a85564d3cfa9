"""``terse demo``: the main job on shipped defaults (run by ``make demo``).

Compresses English text that ships with every CPython (the ``pydoc_data`` help topics),
checks the round trip, and compares with gzip and xz measured on the same bytes.
"""

from __future__ import annotations

import gzip
import lzma
import time

DEMO_BYTES = 64_000


def demo_text(limit: int = DEMO_BYTES) -> bytes:
    """English documentation text shipped with Python itself (no download, no data dir)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    return text.encode("utf-8")[:limit]


def _row(name: str, size_in: int, size_out: int, seconds_c: float, seconds_d: float) -> str:
    return (f"  {name:<22} {8 * size_out / size_in:6.3f} bits/byte  ratio {size_in / size_out:5.2f}x  "
            f"compress {size_in / 1e3 / seconds_c:9.1f} KB/s  decompress {size_in / 1e3 / seconds_d:9.1f} KB/s")


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_demo() -> None:
    from terse.textcomp.compressor import compress, decompress
    from terse.textcomp.model import load_byte_lm

    data = demo_text()
    lm = load_byte_lm()
    print(f"terse demo: neural text compression of {len(data):,} bytes of Python's own help text "
          f"(pydoc_data.topics)")
    print(f"model: {lm.name} (id {lm.model_id}, {sum(p.numel() for p in lm.model.parameters()):,} parameters)")
    blob, t_c = _timed(compress, data, lm)
    restored, t_d = _timed(decompress, blob, lm)
    if restored != data:
        raise SystemExit("round trip FAILED")
    print("round trip: OK (byte-exact)")
    print(_row("terse (neural)", len(data), len(blob), t_c, t_d))
    gz, t_gc = _timed(gzip.compress, data, 9)
    _, t_gd = _timed(gzip.decompress, gz)
    print(_row("gzip -9", len(data), len(gz), t_gc, t_gd))
    xz, t_xc = _timed(lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), data)
    _, t_xd = _timed(lzma.decompress, xz)
    print(_row("xz -9e", len(data), len(xz), t_xc, t_xd))
    print(f"terse output is {len(gz) / len(blob):.2f}x smaller than gzip and {len(xz) / len(blob):.2f}x smaller than xz "
          "on this text.")
