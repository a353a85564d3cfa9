"""WaLLoC's entropy models by kind: fit the tables a codec stores, and build the coder that
stored tables call for.

* ``"mlp"`` (tables with ``entropy.layout``): the MLP wavefront model
  (:mod:`terse.walloc.entropy_model`), the default for image codecs;
* ``"linear"`` (``entropy.mean_weights``, no layout): the linear-logistic wavefront model
  (:mod:`terse.walloc.linear_context`), the default for audio codecs (the MLP overfits the few
  training clips);
* ``"parallel"`` (``pctx.*``): the integer-exact parallel model of image files
  (:mod:`terse.walloc.parallel_context`), a separate artifact in the codec's ``parallel/``
  folder, loaded by :class:`terse.walloc.WallocCodec`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from terse.core.errors import ConfigError
from terse.walloc.context_coding import fit_latents
from terse.walloc.entropy_model import ContextModel, fit_entropy_model
from terse.walloc.linear_context import LinearContextModel, fit_linear_context_model
from terse.walloc.parallel_context import ParallelContextModel, fit_parallel_context

KINDS = ("mlp", "linear", "parallel")
# the options each kind's fit takes (besides the latents)
FIT_OPTIONS = {"mlp": ("steps", "seed", "hidden"), "linear": ("steps",),
               "parallel": ("steps", "hidden", "seed", "positions", "log")}


def default_kind(config) -> str:
    """The wavefront model a new codec of ``config.modality`` stores."""
    return "linear" if config.modality == "audio" else "mlp"


def kind_of(tables: dict[str, torch.Tensor]) -> str:
    """The kind of stored tables."""
    if any(k.startswith("pctx.") for k in tables):
        return "parallel"
    return "linear" if "entropy.layout" not in tables and "entropy.mean_weights" in tables else "mlp"


def fit_context_tables(latents, config, kind: str | None = None, **options: Any) -> dict[str, torch.Tensor]:
    """Tables of ``kind`` (default :func:`default_kind`) fitted on a codec's training latents:
    a (B, C, H, W) / (B, C, T) tensor or a list of (C, H, W) / (C, T) arrays. ``options``: the
    kind's fit options (:data:`FIT_OPTIONS`; ``None`` values take the model's defaults)."""
    kind = kind or default_kind(config)
    if kind not in KINDS:
        raise ConfigError(f"unknown context model kind {kind!r}; choose one of {KINDS}")
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(FIT_OPTIONS[kind]))
    if unknown:
        raise ConfigError(f"the {kind} context model takes no option {unknown}; its options are {FIT_OPTIONS[kind]}")
    if options.get("steps", 1) < 1:
        raise ConfigError(f"steps must be >= 1, got {options['steps']}")
    hidden = np.atleast_1d(options.get("hidden", 1 if kind == "parallel" else (1, 1)))
    if hidden.min() < 1 or hidden.size != (1 if kind == "parallel" else 2):
        raise ConfigError(f"hidden must be {'two widths' if kind == 'mlp' else 'a width'} >= 1, got {options['hidden']}")
    if kind == "parallel":
        if config.modality != "image":
            raise ConfigError("the parallel context model is for image codecs")
        grids, _, _, max_int = fit_latents(latents, config)
        return fit_parallel_context([g.astype(np.int64) for g in grids], max_int, **options)
    if kind == "linear":
        return fit_linear_context_model(latents, config, **options)
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    return fit_entropy_model(latents, config, **options)


def context_model(tables: dict[str, torch.Tensor], max_int: int, modality: str,
                  kind: str | None = None) -> ContextModel | LinearContextModel | ParallelContextModel:
    """The coder for stored tables (of ``kind``, default :func:`kind_of` the tables)."""
    kind = kind or kind_of(tables)
    if kind == "parallel":
        return ParallelContextModel(tables, max_int)
    if kind == "linear":
        return LinearContextModel(tables, max_int, modality)
    if kind == "mlp":
        return ContextModel(tables, max_int, modality)
    raise ConfigError(f"unknown context model kind {kind!r}; choose one of {KINDS}")
