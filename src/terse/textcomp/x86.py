"""The x86 call/jump transform (E8/E9): relative branch targets made absolute.

In x86 machine code, ``call rel32`` (E8) and ``jmp rel32`` (E9) store the target as an
offset from the instruction, so calls to one function look different at every call
site. Adding the position turns them into the same absolute address, which the adaptive
contexts then predict. Both directions scan the same way (an opcode byte followed by
four operand bytes, which are skipped), and opcode bytes are never changed, so the
inverse visits the same positions and restores the input exactly, for any bytes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPCODES = (0xE8, 0xE9)
# A frame is treated as x86 code when at least one in this many bytes is an E8/E9 whose
# operand's top byte is 0x00 or 0xFF (a near branch): ~1 in 20-50 in code, 0 in text,
# ~1 in 20,000 in random bytes.
MIN_DENSITY = 1000
MIN_BRANCHES = 64


def looks_like_x86(frame: bytes) -> bool:
    data = np.frombuffer(frame, dtype=np.uint8)
    if len(data) < 5:
        return False
    opcode = (data[:-4] == _OPCODES[0]) | (data[:-4] == _OPCODES[1])
    near = (data[4:] == 0x00) | (data[4:] == 0xFF)
    branches = int(np.count_nonzero(opcode & near))
    return branches >= MIN_BRANCHES and branches * MIN_DENSITY >= len(data)


@njit(cache=True)
def _transform(data, sign):
    n = len(data)
    i = 0
    while i + 4 < n:
        if data[i] == 0xE8 or data[i] == 0xE9:
            value = (np.int64(data[i + 1]) | (np.int64(data[i + 2]) << 8) | (np.int64(data[i + 3]) << 16)
                     | (np.int64(data[i + 4]) << 24))
            value = (value + sign * i) & 0xFFFFFFFF
            for k in range(4):
                data[i + 1 + k] = (value >> (8 * k)) & 0xFF
            i += 5
        else:
            i += 1


def encode_x86(frame: bytes) -> bytes:
    data = np.frombuffer(frame, dtype=np.uint8).copy()
    _transform(data, 1)
    return data.tobytes()


def decode_x86(frame: bytes) -> bytes:
    data = np.frombuffer(frame, dtype=np.uint8).copy()
    _transform(data, -1)
    return data.tobytes()
