"""Shared torch building blocks (no system logic): the small GPT, its integer twin, LM training, wavelet packets."""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "GPT": "terse.nn.gpt",
    "GPTConfig": "terse.nn.gpt",
    "KVCache": "terse.nn.gpt",
    "IntegerGPT": "terse.nn.integer_gpt",
    "IntegerGPTConfig": "terse.nn.integer_gpt",
    "quantize_gpt": "terse.nn.quantize_gpt",
    "TrainConfig": "terse.nn.train_lm",
    "train_lm": "terse.nn.train_lm",
    "evaluate_loss": "terse.nn.train_lm",
    "make_optimizer": "terse.nn.train_lm",
    "wpt1d": "terse.nn.wavelets",
    "iwpt1d": "terse.nn.wavelets",
    "wpt2d": "terse.nn.wavelets",
    "iwpt2d": "terse.nn.wavelets",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
