"""WaLLoC's entropy models by kind: fit the tables a codec stores, and build the coder its
tables call for.

* ``entropy.layout`` present: the MLP wavefront model (:mod:`terse.walloc.entropy_model`),
  fitted for image codecs;
* ``entropy.mean_weights``: the linear-logistic wavefront model
  (:mod:`terse.walloc.linear_context`), fitted for audio codecs (the MLP overfits the few
  training clips);
* the parallel model of image files (:mod:`terse.walloc.parallel_context`) is a separate
  artifact in the codec's ``parallel/`` folder, loaded by :class:`terse.walloc.WallocCodec`.
"""

from __future__ import annotations

import torch

from terse.walloc.entropy_model import ContextModel, fit_entropy_model
from terse.walloc.linear_context import LinearContextModel, fit_linear_context_model


def fit_context_tables(latents, config) -> dict[str, torch.Tensor]:
    """Entropy tables for a codec of ``config.modality``, fitted on its training latents."""
    if config.modality == "audio":
        return fit_linear_context_model(latents, config)
    return fit_entropy_model(latents, config)


def context_model(tables: dict[str, torch.Tensor], max_int: int, modality: str) -> ContextModel | LinearContextModel:
    """The wavefront coder for a codec's stored entropy tables."""
    if "entropy.layout" not in tables and "entropy.mean_weights" in tables:
        return LinearContextModel(tables, max_int, modality)
    return ContextModel(tables, max_int, modality)
