"""WaLLoC: wavelet learned lossy compression for RGB images and stereo audio.

Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning" (DCC 2025).

    >>> import numpy as np
    >>> from terse.walloc import decompress, load_codec
    >>> codec = load_codec("walloc-rgb-16x")                       # shipped, offline
    >>> image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    >>> blob = codec.compress(image)                               # .wlc bytes
    >>> decompress(blob).data.shape                                # the file names its codec
    (64, 96, 3)

Names are resolved lazily so ``import terse.walloc`` does not import torch.
"""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "Decoded": "terse.walloc.codec",
    "WallocCodec": "terse.walloc.codec",
    "decompress": "terse.walloc.codec",
    "load_codec": "terse.walloc.codec",
    "save_codec": "terse.walloc.codec",
    "WallocConfig": "terse.walloc.model",
    "WallocNet": "terse.walloc.model",
    "WallocTrainConfig": "terse.walloc.training",
    "train_walloc": "terse.walloc.training",
    "linear_codec": "terse.walloc.training",
    "fit_parallel_tables": "terse.walloc.training",
    "DecoderFinetuneConfig": "terse.walloc.derive",
    "finetune_decoder": "terse.walloc.derive",
    "refit_entropy_tables": "terse.walloc.derive",
    "fit_context_tables": "terse.walloc.context_models",
    "psnr": "terse.walloc.metrics",
    "ms_ssim": "terse.walloc.metrics",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
