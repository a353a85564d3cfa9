"""Neural text compression (Lester et al. 2024, *Training LLMs over Neurally Compressed
Text*): an M1 byte LM drives a range coder (``compress``/``decompress``); Equal-Info
Windows tokenize text for LMs trained over compressed tokens (``equal_info``, ``m2``)."""

__all__ = ["CoderParams", "compress", "decompress"]


def __getattr__(name: str):
    # Lazy, so that importing a submodule (e.g. the tokenizers) does not load the compiled
    # context mixer (numba).
    if name in __all__:
        from terse.textcomp import compressor

        return getattr(compressor, name)
    raise AttributeError(f"module 'terse.textcomp' has no attribute {name!r}")
