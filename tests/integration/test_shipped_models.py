"""The shipped M1 models load (sha256-verified), round-trip and actually compress English."""

import pytest

from terse.textcomp.compressor import compress, decompress
from terse.textcomp.model import DEFAULT_MODEL, PRETRAINED_DIR, load_byte_lm

SHIPPED = sorted(p.name for p in PRETRAINED_DIR.glob("m1-*") if p.is_dir())
ENGLISH = (b"It is a truth universally acknowledged, that a single man in possession of a good fortune, "
           b"must be in want of a wife. However little known the feelings or views of such a man may be "
           b"on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
           b"surrounding families, that he is considered the rightful property of some one or other of "
           b"their daughters.\n") * 3


def test_default_model_is_shipped():
    assert DEFAULT_MODEL in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_round_trips_and_compresses(name):
    lm = load_byte_lm(name)
    blob = compress(ENGLISH, lm)
    assert decompress(blob) == ENGLISH  # model found from the header alone
    assert 8 * len(blob) / len(ENGLISH) < 3.5
