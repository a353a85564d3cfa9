"""Neural text compression (Lester et al. 2024, *Training LLMs over Neurally Compressed
Text*): an M1 byte LM drives a range coder (``compress``/``decompress``)."""

from terse.textcomp.compressor import CoderParams, compress, decompress

__all__ = ["CoderParams", "compress", "decompress"]
