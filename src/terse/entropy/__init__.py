"""Entropy coding shared by textcomp and walloc: CDF quantization, an exact bit-level
arithmetic coder (reference and bit-exact uses) and a fast batched range coder."""
