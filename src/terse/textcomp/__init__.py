"""Neural text compression (Lester et al. 2024, *Training LLMs over Neurally Compressed
Text*): an M1 byte LM drives a range coder, mixed with adaptive contexts
(:func:`load_compressor`); Equal-Info Windows tokenize text for LMs trained over
compressed tokens (:class:`EqualInfoTokenizer`, :func:`train_m2`).

    >>> from terse.textcomp import load_compressor
    >>> compressor = load_compressor(level=1)   # context mixing alone (no network)
    >>> compressor.decompress(compressor.compress(b"hello, hello, hello")) == b"hello, hello, hello"
    True

Names are resolved lazily, so importing a submodule (e.g. the tokenizers) does not load
the compiled context mixer (numba).
"""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "CoderParams": "terse.textcomp.compressor",
    "DEFAULT_LEVEL": "terse.textcomp.compressor",
    "LEVELS": "terse.textcomp.compressor",
    "Level": "terse.textcomp.compressor",
    "TextCompressor": "terse.textcomp.compressor",
    "compress": "terse.textcomp.compressor",
    "compress_stream": "terse.textcomp.compressor",
    "decompress": "terse.textcomp.compressor",
    "decompress_stream": "terse.textcomp.compressor",
    "load_compressor": "terse.textcomp.compressor",
    "ByteLM": "terse.textcomp.model",
    "load_byte_lm": "terse.textcomp.model",
    "load_integer_lm": "terse.textcomp.model",
    "quantize_m1": "terse.textcomp.model",
    "train_m1": "terse.textcomp.training",
    "EqualInfoConfig": "terse.textcomp.equal_info",
    "EqualInfoTokenizer": "terse.textcomp.equal_info",
    "Tokenizer": "terse.textcomp.tokenizer_base",
    "ArithmeticTokenizer": "terse.textcomp.tokenizers",
    "ByteTokenizer": "terse.textcomp.tokenizers",
    "GzipTokenizer": "terse.textcomp.tokenizers",
    "SentencePieceTokenizer": "terse.textcomp.tokenizers",
    "load_tokenizer": "terse.textcomp.tokenizers",
    "M2TrainConfig": "terse.textcomp.m2",
    "evaluate_m2": "terse.textcomp.m2",
    "generate": "terse.textcomp.m2",
    "load_m2": "terse.textcomp.m2",
    "tokenize_examples": "terse.textcomp.m2",
    "train_m2": "terse.textcomp.m2",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
