"""A 100 MB input streams through the compressor with bounded memory (slow: -m slow)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import io, resource, sys, tempfile, zlib
    import torch
    from terse.textcomp.compressor import CoderParams, compress_stream, decompress_stream
    from terse.textcomp.model import load_byte_lm
    torch.set_num_threads(2)
    lm = load_byte_lm(sys.argv[1])
    total = int(sys.argv[2])

    class Source(io.RawIOBase):  # 100 MB of pseudo-text generated on the fly, never held in memory
        def __init__(self):
            self.left, self.crc, self.pattern = total, 0, b"streaming test line %d of many\\n"
            self.i = 0
        def readable(self):
            return True
        def readinto(self, buf):
            chunk = bytearray()
            while len(chunk) < min(len(buf), self.left):
                chunk += self.pattern % self.i
                self.i += 1
            chunk = bytes(chunk[:min(len(buf), self.left)])
            self.left -= len(chunk)
            self.crc = zlib.crc32(chunk, self.crc)
            buf[:len(chunk)] = chunk
            return len(chunk)

    class Sink(io.RawIOBase):
        def __init__(self):
            self.n, self.crc, self.parts = 0, 0, []
        def writable(self):
            return True
        def write(self, b):
            self.n += len(b); self.crc = zlib.crc32(b, self.crc)
            return len(b)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    src = Source()
    packed = tempfile.TemporaryFile()
    assert compress_stream(io.BufferedReader(src, 1 << 16), packed, lm) == total
    packed.seek(0)
    out = Sink()
    assert decompress_stream(packed, out, lm) == total and out.crc == src.crc
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{growth_mb:.0f} {packed.tell()}")
""")


@pytest.mark.slow
def test_100mb_streams_with_bounded_memory(tiny_m1_dir):
    total = 100 * 1024 * 1024
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_m1_dir), str(total)],
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-2000:]
    growth_mb, packed = result.stdout.split()
    assert int(packed) > 0
    assert float(growth_mb) < 300  # input and output both stream through disk-sized buffers
