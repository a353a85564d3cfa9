"""Fine-tuned students as one object: :func:`load_student` returns a :class:`Student` (a Hugging
Face sequence classifier with its tokenizer and provenance) that classifies and evaluates.

The shipped students are MiniLM-L6-H384 sliced to the shapes searched under 1/4 and 1/8 of its
MACs, fine-tuned on SST-2 with task distillation, augmented inputs and the relation loss
(fp16): ``autodistil-sst2`` at 0.23x the teacher's MACs (the default, for ``terse demo``) and
``autodistil-sst2-eighth`` at 0.12x:

    >>> from terse.autodistil import load_student
    >>> student = load_student()                       # the shipped SST-2 student, offline
    >>> student.subnet.name, student.info["sst2_dev_accuracy"]
    ('L4-A8-H256-F640', 84.17)
    >>> [label for label, _ in student.classify(["a wonderful , moving and funny film .",
    ...                                          "a dull , tedious and ugly mess ."])]
    ['positive', 'negative']
"""

from __future__ import annotations

from pathlib import Path

from terse.autodistil.space import SubnetConfig
from terse.core.errors import ArtifactError, ConfigError

SHIPPED_NAME = "autodistil-sst2"
PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
SHIPPED = PRETRAINED / SHIPPED_NAME
SHIPPED_NAMES = (SHIPPED_NAME, "autodistil-sst2-eighth")
LABELS = ("negative", "positive")  # SST-2, the shipped student's labels


class Student:
    """A fine-tuned student: ``model`` (``*ForSequenceClassification``, eval mode), ``tokenizer``,
    ``info`` (the manifest's provenance) and the class ``labels``."""

    def __init__(self, model, tokenizer, info: dict | None = None, labels: tuple[str, ...] | None = None):
        self.model, self.tokenizer, self.info = model.eval(), tokenizer, dict(info or {})
        if labels is None:
            labels = tuple(self.info.get("labels") or (model.config.id2label[i] for i in range(model.config.num_labels)))
        self.labels = tuple(labels)

    @property
    def subnet(self) -> SubnetConfig | None:
        """The architecture it was extracted as (``None`` when the manifest does not say)."""
        return SubnetConfig.from_dict(self.info["subnet"]) if "subnet" in self.info else None

    def __repr__(self) -> str:
        name = self.subnet.name if self.subnet else self.model.config.model_type
        return f"Student({name}, labels {self.labels})"

    def predict(self, texts: list[str] | list[tuple[str, str]], max_length: int = 128):
        """Logits (N, classes) as a float tensor; ``texts`` are sentences or sentence pairs."""
        import torch

        columns = list(zip(*texts, strict=True)) if texts and isinstance(texts[0], tuple) else [list(texts)]
        enc = self.tokenizer(*columns, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            return self.model(**enc).logits.float()

    def classify(self, texts: list[str] | list[tuple[str, str]], max_length: int = 128) -> list[tuple[str, float]]:
        """The label and its probability for each text."""
        import torch

        if self.model.config.num_labels < 2:
            raise ConfigError("this student is a regression model (one output): use predict()")
        probs = torch.softmax(self.predict(texts, max_length), -1)
        return [(self.labels[int(p.argmax())], float(p.max())) for p in probs]

    def evaluate(self, task: str, glue: Path | None = None, device: str = "cpu", max_len: int = 128) -> dict:
        """Dev-set metrics (percent) on a GLUE task (``glue``: the GLUE folder, default ``<data>/glue``)."""
        from terse.autodistil.glue import evaluate_classifier
        from terse.core.paths import data_path

        metrics = evaluate_classifier(self.model, self.tokenizer, Path(glue) if glue else data_path("glue"), task,
                                      device=device, max_len=max_len)
        self.model.cpu()
        return metrics


def load_student(name_or_path: str | Path = SHIPPED_NAME) -> Student:
    """A shipped student (by name: ``SHIPPED_NAMES``) or a classifier folder (``finetune --out``). A folder with a
    ``manifest.json`` is checked against it (ArtifactError on any changed file); the shipped
    one must have it."""
    from transformers.utils import logging as hf_logging

    from terse.autodistil.extract import verify_student

    shipped = str(name_or_path) in SHIPPED_NAMES
    folder = PRETRAINED / str(name_or_path) if shipped else Path(name_or_path)
    has_manifest = (folder / "manifest.json").is_file()
    if shipped and not has_manifest:
        raise ArtifactError(f"{folder} holds no shipped AutoDistil student")
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder} is not a Hugging Face model folder (config.json missing)")
    info = verify_student(folder).get("info", {}) if has_manifest else {}
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return Student(*_load_classifier(folder, "the student"), info)


def _load_classifier(folder: Path, what: str):
    """-> (fp32 sequence classifier, tokenizer) from a folder; ArtifactError when unreadable."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                                   dtype=torch.float32)
        return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load {what} in {folder}: {exc}") from None


def package_student(classifier_dir: Path | str, out_dir: Path | str, labels: tuple[str, ...] | None = None,
                    info: dict | None = None, dtype: str = "float16") -> dict:
    """Write a fine-tuned classifier (``finetune --out``) as a deployable student folder:
    class names in ``id2label`` (so ``pipeline("text-classification")`` prints them), weights
    in ``dtype``, the tokenizer, and a sha256 manifest with ``info``. The folder is written
    beside ``out_dir`` and renamed into place, so a failure leaves no half-written student.
    Returns the manifest."""
    import shutil
    import tempfile

    import torch

    from terse.autodistil.extract import write_manifest

    source, out_dir = Path(classifier_dir), Path(out_dir)
    if not (source / "config.json").is_file():
        raise ArtifactError(f"{source} is not a Hugging Face model folder (config.json missing)")
    if out_dir.exists():
        raise ConfigError(f"{out_dir} exists; choose a new folder")
    if dtype not in ("float16", "float32"):
        raise ConfigError(f"dtype must be float16 or float32, got {dtype!r}")
    model, tokenizer = _load_classifier(source, "the classifier")
    if labels is not None:
        if len(labels) != model.config.num_labels:
            raise ConfigError(f"{len(labels)} labels given for a classifier with {model.config.num_labels} outputs")
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {name: i for i, name in enumerate(labels)}
    labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        folder = Path(tmp) / "student"
        model.to(getattr(torch, dtype)).eval().save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        c = model.config
        subnet = SubnetConfig(c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.intermediate_size)
        manifest = write_manifest(folder, {"subnet": subnet.to_dict(), "name": subnet.name, "labels": list(labels),
                                           **(info or {})})
        shutil.move(str(folder), out_dir)
    return manifest


def load_shipped_student(folder: Path = SHIPPED):
    """-> (sequence classifier in fp32 eval mode, tokenizer, manifest info). Verifies sha256."""
    if not (Path(folder) / "manifest.json").is_file():
        raise ArtifactError(f"{folder} holds no shipped AutoDistil student")
    student = load_student(folder)
    return student.model, student.tokenizer, student.info


def classify(model, tokenizer, texts: list[str]) -> list[tuple[str, float]]:
    """Sentiment label and its probability for each text (with the shipped student's labels)."""
    return Student(model, tokenizer, labels=LABELS).classify(texts)
