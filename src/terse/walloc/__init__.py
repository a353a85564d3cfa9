"""WaLLoC: wavelet learned lossy compression for RGB images and stereo audio.

Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning" (DCC 2025).
``load_codec(name).compress(signal)`` -> ``.wlc`` bytes; ``decompress(blob)`` needs no
other argument. See :mod:`terse.walloc.model` for the network.
"""

from terse.walloc.codec import Decoded, WallocCodec, decompress, load_codec
from terse.walloc.model import WallocConfig, WallocNet

__all__ = ["Decoded", "WallocCodec", "WallocConfig", "WallocNet", "decompress", "load_codec"]
