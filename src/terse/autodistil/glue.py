"""GLUE fine-tuning and dev evaluation with one protocol for every model.

Tasks (``glue/<TASK>/{train,dev}.tsv``, original layout): CoLA (MCC), SST-2 (accuracy),
MRPC (F1 and accuracy), RTE (accuracy), STS-B (Pearson and Spearman). The GLUE score of
a task is its metric, or the mean of its two metrics (MRPC, STS-B); the average is over
tasks.

Protocol (:class:`FinetuneConfig`): ``BertForSequenceClassification`` on the model's
pooled [CLS] output (regression head for STS-B), max length 128, batch 32, AdamW,
linear decay with 10% warm-up, a fixed number of epochs; training sets are subsampled to
at most ``max_train_examples`` (one fixed subsample, the same for every seed); the dev set is scored after every epoch and both
the last-epoch and the best-epoch scores are returned (best-epoch dev numbers are
optimistic and are labelled as such in reports).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from terse.core.artifacts import sha256_file
from terse.core.config import FrozenConfig
from terse.core.errors import ArtifactError, ConfigError, DataError
from terse.core.progress import progress
from terse.nn.optim import adamw

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    text_columns: tuple[int | str, ...]   # column index (no header) or header name
    label_column: int | str
    has_header: bool
    labels: tuple[str, ...] | None        # None = regression
    metrics: tuple[str, ...]


TASKS: dict[str, TaskSpec] = {
    "CoLA": TaskSpec("CoLA", (3,), 1, False, ("0", "1"), ("mcc",)),
    "SST-2": TaskSpec("SST-2", ("sentence",), "label", True, ("0", "1"), ("accuracy",)),
    "MRPC": TaskSpec("MRPC", ("#1 String", "#2 String"), "Quality", True, ("0", "1"), ("f1", "accuracy")),
    "RTE": TaskSpec("RTE", ("sentence1", "sentence2"), "label", True, ("not_entailment", "entailment"), ("accuracy",)),
    "STS-B": TaskSpec("STS-B", ("sentence1", "sentence2"), "score", True, None, ("pearson", "spearman")),
}


def task_spec(name: str) -> TaskSpec:
    for key, spec in TASKS.items():
        if key.lower() == name.lower():
            return spec
    raise ConfigError(f"unknown GLUE task {name!r}; supported: {', '.join(TASKS)}")


def read_tsv(path: Path, spec: TaskSpec) -> tuple[list[tuple[str, ...]], list[float]]:
    """-> (texts, labels) of a GLUE TSV. A malformed row is a DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    texts, labels = [], []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None) if spec.has_header else None
        if spec.has_header:
            if header is None:
                raise DataError(f"{path} is empty")
            try:
                cols = [header.index(c) for c in (*spec.text_columns, spec.label_column)]
            except ValueError:
                raise DataError(f"{path}: header {header} lacks the {spec.name} columns "
                                f"{[*spec.text_columns, spec.label_column]}") from None
        else:
            cols = [*spec.text_columns, spec.label_column]
        first = 2 if spec.has_header else 1
        for line_no, row in enumerate(rows, start=first):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(cols):
                raise DataError(f"{path}:{line_no}: malformed row ({len(row)} fields, need {max(cols) + 1})")
            raw = row[cols[-1]].strip()
            if spec.labels is None:
                try:
                    label = float(raw)
                except ValueError:
                    raise DataError(f"{path}:{line_no}: score {raw!r} is not a number") from None
            else:
                if raw not in spec.labels:
                    raise DataError(f"{path}:{line_no}: label {raw!r} is not one of {spec.labels}")
                label = float(spec.labels.index(raw))
            texts.append(tuple(row[c] for c in cols[:-1]))
            labels.append(label)
    if not texts:
        raise DataError(f"{path} has no examples")
    return texts, labels


# ------------------------------------------------------------------------------ metrics

def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]  # average rank for ties


def pearson(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom else 0.0


def spearman(a, b) -> float:
    return pearson(_rank(np.asarray(a, float)), _rank(np.asarray(b, float)))


def matthews(pred, gold) -> float:
    pred, gold = np.asarray(pred, int), np.asarray(gold, int)
    tp = float(((pred == 1) & (gold == 1)).sum())
    tn = float(((pred == 0) & (gold == 0)).sum())
    fp = float(((pred == 1) & (gold == 0)).sum())
    fn = float(((pred == 0) & (gold == 1)).sum())
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


def f1_binary(pred, gold) -> float:
    pred, gold = np.asarray(pred, int), np.asarray(gold, int)
    tp = float(((pred == 1) & (gold == 1)).sum())
    fp = float(((pred == 1) & (gold == 0)).sum())
    fn = float(((pred == 0) & (gold == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def task_metrics(spec: TaskSpec, outputs: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Metrics in percent. ``outputs``: logits (N, C) or scores (N,)."""
    if spec.labels is None:
        scores = outputs.reshape(-1)
        result = {"pearson": pearson(scores, gold), "spearman": spearman(scores, gold)}
    else:
        pred = outputs.argmax(-1)
        result = {"accuracy": float((pred == gold).mean()), "f1": f1_binary(pred, gold), "mcc": matthews(pred, gold)}
    result = {k: 100 * v for k, v in result.items() if k in spec.metrics}
    result["score"] = float(np.mean([result[m] for m in spec.metrics]))
    return result


# ------------------------------------------------------------------------------ fine-tuning

@dataclasses.dataclass(frozen=True)
class FinetuneConfig(FrozenConfig):
    """The single protocol used for every model (teacher, students, baselines)."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_len: int = 128
    max_train_examples: int = 10000     # CoLA, MRPC, RTE, STS-B whole; SST-2: a fixed 10,000 of its 67,349
    max_dev_examples: int = 0           # 0 = the whole dev set
    seed: int = 0
    # Batches of similar lengths (shuffled, then sorted within windows of 50 batches, the
    # batches shuffled again): about half the padded tokens of random batches on GLUE.
    group_by_length: bool = True
    # Task distillation (used when a fine-tuned teacher is given): the loss is
    # (1 - distill_weight) * label loss + distill_weight * teacher loss, where the teacher
    # loss is T^2 * KL(teacher || student) on logits softened by the temperature T
    # (classification) or the MSE to the teacher's score (STS-B).
    distill_weight: float = 0.5
    temperature: float = 2.0
    transfer_examples: int = 0          # extra inputs from the training set outside the subsample, teacher-labelled
    augment_examples: int = 0           # extra inputs made from the training sentences (augment.py), teacher-labelled
    # + relation_weight x the MiniLMv2 relation loss (Q-Q, K-K, V-V of the last layer, KL,
    # the teacher's heads) between the task teacher and the student on every training batch.
    relation_weight: float = 0.0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.max_len < 8:
            raise ConfigError("epochs and batch_size must be >= 1, max_len >= 8")
        if not 0 <= self.warmup_fraction < 1 or self.learning_rate <= 0:
            raise ConfigError("warmup_fraction must be in [0, 1) and learning_rate > 0")
        if self.transfer_examples < 0 or self.augment_examples < 0:
            raise ConfigError("transfer_examples and augment_examples must be >= 0")
        if not 0 <= self.distill_weight <= 1 or self.temperature <= 0:
            raise ConfigError("distill_weight must be in [0, 1] and temperature > 0")
        if self.relation_weight < 0:
            raise ConfigError("relation_weight must be >= 0")


def _encode(tokenizer, texts, max_len):
    columns = list(zip(*texts, strict=True))
    enc = tokenizer(*columns, truncation=True, max_length=max_len)
    return enc["input_ids"], enc.get("token_type_ids")


def _batches(ids, types, labels, order, batch_size, device, regression, targets=None):
    """Padded batches ``(ids, token types, mask, labels, teacher targets or None)``."""
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(ids[i]) for i in idx)
        x = torch.zeros(len(idx), width, dtype=torch.long)
        t = torch.zeros(len(idx), width, dtype=torch.long)
        m = torch.zeros(len(idx), width, dtype=torch.long)
        for row, i in enumerate(idx):
            x[row, :len(ids[i])] = torch.tensor(ids[i])
            m[row, :len(ids[i])] = 1
            if types is not None:
                t[row, :len(types[i])] = torch.tensor(types[i])
        y = torch.tensor([labels[i] for i in idx], dtype=torch.float if regression else torch.long)
        soft = targets[idx].to(device) if targets is not None else None
        yield x.to(device), t.to(device), m.to(device), y.to(device), soft


def epoch_order(lengths: list[int], batch_size: int, rng: random.Random, group_by_length: bool,
                window_batches: int = 50) -> list[int]:
    """The example order of one epoch: a shuffle, or with ``group_by_length`` a shuffle whose
    windows of ``window_batches`` batches are sorted by length and cut into batches that are
    then shuffled (so every batch is one of similar lengths, in random order)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return order
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    rng.shuffle(full)
    # the one short batch goes last, so cutting the order every batch_size rows gives these batches
    return [i for batch in full + [b for b in batches if len(b) < batch_size] for i in batch]


def _check_model_dir(model_dir: Path) -> None:
    if not (Path(model_dir) / "config.json").is_file():
        raise ArtifactError(f"{model_dir} is not a Hugging Face model folder (config.json missing)")


def _from_pretrained(loader, folder: Path, **kwargs):
    """``loader.from_pretrained`` offline; a missing or unreadable file is an ArtifactError."""
    try:
        return loader.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load {folder}: {exc}") from None


def load_task(data_dir: Path, task: str) -> tuple[TaskSpec, tuple, tuple]:
    spec = task_spec(task)
    folder = Path(data_dir) / spec.name
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist (expected glue/<TASK>/train.tsv and dev.tsv)")
    return spec, read_tsv(folder / "train.tsv", spec), read_tsv(folder / "dev.tsv", spec)


def finetune(model_dir: Path, data_dir: Path, task: str, config: FinetuneConfig = FinetuneConfig(),
             device: str = "cpu", out_dir: Path | None = None, tokenizer_dir: Path | None = None,
             teacher_dir: Path | None = None) -> dict:
    """Fine-tune the encoder in ``model_dir`` on ``task`` and score GLUE dev after every epoch.

    With ``teacher_dir`` (a classifier already fine-tuned on ``task``, e.g. from
    :func:`task_teacher`) this is task distillation: the teacher's outputs on the training
    examples are computed once, in eval mode, and the student learns from them and the
    labels (``config.distill_weight``, ``config.temperature``), and from inputs the teacher
    alone labels: ``config.transfer_examples`` of the training set's unused part and
    ``config.augment_examples`` made from the training sentences (:mod:`terse.autodistil.augment`).

    Returns ``{"task", "epochs": [metrics per epoch], "last": ..., "best": ..., "seconds", "train_examples"}``.
    With ``out_dir`` the last-epoch model (and tokenizer) is saved there.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    _check_model_dir(model_dir)
    spec, (train_x, train_y), (dev_x, dev_y) = load_task(data_dir, task)
    rng = random.Random(0)   # one fixed subsample for every seed and model: seeds vary initialisation and order
    unused: list = []        # training examples outside the subsample
    if config.max_train_examples and len(train_x) > config.max_train_examples:
        keep = sorted(rng.sample(range(len(train_x)), config.max_train_examples))
        kept = set(keep)
        unused = [train_x[i] for i in range(len(train_x)) if i not in kept]
        train_x, train_y = [train_x[i] for i in keep], [train_y[i] for i in keep]
    labeled = len(train_x)
    if (config.transfer_examples or config.augment_examples or config.relation_weight) and teacher_dir is None:
        raise ConfigError("transfer and augmented examples are labelled by the teacher and the relation loss "
                          "needs it: pass a task teacher")
    teacher = load_task_teacher(Path(teacher_dir), spec, device) if teacher_dir is not None else None
    if config.transfer_examples:
        # Inputs of the training set the subsample left out, labelled by the teacher only.
        extra = random.Random(1).sample(unused, min(config.transfer_examples, len(unused)))
        train_x, train_y = train_x + extra, train_y + [0.0] * len(extra)
    if config.augment_examples:
        from terse.autodistil.augment import augmented_inputs

        made = augmented_inputs(train_x[:labeled], config.augment_examples, teacher.base_model,
                                _from_pretrained(AutoTokenizer, teacher_dir))
        train_x, train_y = train_x + made, train_y + [0.0] * len(made)
    if config.max_dev_examples and len(dev_x) > config.max_dev_examples:
        dev_x, dev_y = dev_x[:config.max_dev_examples], dev_y[:config.max_dev_examples]
    tokenizer = _from_pretrained(AutoTokenizer, tokenizer_dir or model_dir)
    regression = spec.labels is None
    torch.manual_seed(config.seed)
    model = _from_pretrained(
        AutoModelForSequenceClassification, model_dir, num_labels=1 if regression else len(spec.labels),
        use_safetensors=True, dtype=torch.float32,
        problem_type="regression" if regression else "single_label_classification").to(device)
    tr_ids, tr_types = _encode(tokenizer, train_x, config.max_len)
    dv_ids, dv_types = _encode(tokenizer, dev_x, config.max_len)
    targets = None
    if teacher is not None:
        t_ids, t_types = _encode(_from_pretrained(AutoTokenizer, teacher_dir), train_x, config.max_len)
        targets = predict_outputs(teacher, t_ids, t_types, device)
        if config.relation_weight and (t_ids != tr_ids or t_types != tr_types):
            raise ConfigError("the relation loss needs the student and the teacher to tokenize alike "
                              "(a student extracted from this teacher's supernet does)")
        if not config.relation_weight:
            teacher = None
        has_label = (torch.arange(len(train_x)) < labeled).float()[:, None]
        targets = torch.cat([targets, has_label], 1)   # last column: 1 = the example has a gold label
    steps = config.epochs * math.ceil(len(tr_ids) / config.batch_size)
    warmup = int(steps * config.warmup_fraction)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    opt = adamw([{"params": decay, "weight_decay": config.weight_decay},
                 {"params": no_decay, "weight_decay": 0.0}], config.learning_rate, device)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    dev_device = torch.device(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev_device.type == "cuda" else torch.autocast("cpu", enabled=False)
    relations = _RelationDistiller(teacher, model) if teacher is not None else None
    epochs, t0 = [], time.perf_counter()
    bar = progress(total=steps, desc=f"fine-tuning {spec.name}", unit="step")
    for epoch in range(config.epochs):
        model.train()
        order = epoch_order([len(i) for i in tr_ids], config.batch_size, random.Random(config.seed * 1000 + epoch),
                            config.group_by_length)
        for x, t, m, y, soft in _batches(tr_ids, tr_types, train_y, order, config.batch_size, device, regression,
                                         targets):
            with amp:
                out = model(input_ids=x, token_type_ids=t, attention_mask=m, labels=y)
            loss = out.loss if soft is None else distillation_loss(out.logits.float(), y, soft, regression, config)
            if relations is not None:
                loss = loss + config.relation_weight * relations.loss(x, t, m, amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(1)
        metrics = evaluate_model(model, spec, dv_ids, dv_types, dev_y, device)
        metrics["epoch"] = epoch + 1
        epochs.append(metrics)
        log.info("%s epoch %d: %s", spec.name, epoch + 1, metrics)
    bar.close()
    if relations is not None:
        relations.close()
    if out_dir is not None:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    best = max(epochs, key=lambda e: e["score"])
    return {"task": spec.name, "epochs": epochs, "last": epochs[-1], "best": best,
            "train_examples": labeled, "transfer_examples": len(tr_ids) - labeled - config.augment_examples,
            "augmented_examples": config.augment_examples, "dev_examples": len(dv_ids),
            "seconds": time.perf_counter() - t0}


class _RelationDistiller:
    """The relation loss between a (frozen) task teacher and the student being trained:
    forward hooks record each model's last-layer Q, K, V projections (B, T, W)."""

    def __init__(self, teacher, student):
        teacher.eval()
        self.teacher, self.heads = teacher, teacher.config.num_attention_heads
        self.recorded: dict[str, list] = {"teacher": [None] * 3, "student": [None] * 3}
        self.hooks = [linear.register_forward_hook(self._recorder(side, i))
                      for side, model in (("teacher", teacher), ("student", student))
                      for i, linear in enumerate(self._qkv(model))]

    @staticmethod
    def _qkv(model):
        attention = model.base_model.encoder.layer[-1].attention.self
        return attention.query, attention.key, attention.value

    def _recorder(self, side: str, index: int):
        def hook(module, inputs, output):
            self.recorded[side][index] = output
        return hook

    def loss(self, ids, types, mask, amp) -> torch.Tensor:
        """Call after the student's forward on the same batch."""
        from terse.autodistil.distill import relation_loss

        with torch.no_grad(), amp:
            self.teacher(input_ids=ids, token_type_ids=types, attention_mask=mask)
        return relation_loss(self.recorded["teacher"], self.recorded["student"], mask, self.heads)

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, regression: bool,
                      config: FinetuneConfig) -> torch.Tensor:
    """(1 - w) * label loss + w * teacher loss (see :class:`FinetuneConfig`). ``teacher``: the
    teacher's outputs, with an optional last column ``has_label`` (1/0; rows without a gold
    label, the transfer examples, count in the teacher loss only)."""
    w, T = config.distill_weight, config.temperature
    width = 1 if regression else logits.shape[-1]
    has_label = teacher[:, width] if teacher.shape[-1] > width else torch.ones(len(logits), device=logits.device)
    teacher = teacher[:, :width]
    if regression:
        scores = logits.reshape(-1)
        hard_rows = (scores - labels).pow(2)
        soft = torch.nn.functional.mse_loss(scores, teacher.reshape(-1))
    else:
        hard_rows = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        soft = torch.nn.functional.kl_div(torch.log_softmax(logits / T, -1), torch.log_softmax(teacher / T, -1),
                                          reduction="batchmean", log_target=True) * T * T
    hard = (hard_rows * has_label).sum() / has_label.sum().clamp_min(1)
    return (1 - w) * hard + w * soft


@torch.no_grad()
def predict_outputs(model, ids, types, device: str = "cpu", batch_size: int = 128) -> torch.Tensor:
    """The classifier's logits (N, C) (scores (N, 1) for regression), in eval mode, row order kept."""
    model.eval()
    outputs = []
    dev_device = torch.device(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev_device.type == "cuda" else torch.autocast("cpu", enabled=False)
    dummy = [0.0] * len(ids)
    for x, t, m, _, _ in _batches(ids, types, dummy, list(range(len(ids))), batch_size, device, True):
        with amp:
            outputs.append(model(input_ids=x, token_type_ids=t, attention_mask=m).logits.float().cpu())
    return torch.cat(outputs)


def evaluate_model(model, spec: TaskSpec, ids, types, labels, device: str = "cpu", batch_size: int = 128) -> dict:
    out = predict_outputs(model, ids, types, device, batch_size).numpy()
    return task_metrics(spec, out, np.asarray(labels, dtype=float if spec.labels is None else int))


def load_task_teacher(folder: Path, spec: TaskSpec, device: str = "cpu"):
    """A classifier fine-tuned on ``spec``'s task (its head must have the task's outputs)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    _check_model_dir(folder)
    config = _from_pretrained(AutoConfig, folder)
    want = 1 if spec.labels is None else len(spec.labels)
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if not heads or config.num_labels != want:
        raise ConfigError(f"{folder} is not a {spec.name} classifier ({want} output(s)); fine-tune the teacher on "
                          f"the task first (task_teacher / `terse autodistil finetune --teacher` does it)")
    return _from_pretrained(AutoModelForSequenceClassification, folder, dtype=torch.float32,
                            use_safetensors=True).to(device)


def task_teacher(encoder_dir: Path, data_dir: Path, task: str, config: FinetuneConfig, cache_dir: Path,
                 device: str = "cpu") -> Path:
    """The teacher ``encoder_dir`` fine-tuned on ``task`` under ``config``, made once and
    cached in ``cache_dir`` (keyed by the encoder's weights, the task, the data and the
    protocol); returns the classifier's folder. A folder that already is a classifier for
    the task is returned as it is."""
    import hashlib
    import json
    import tempfile

    from transformers import AutoConfig

    spec = task_spec(task)
    _check_model_dir(encoder_dir)
    hf_config = _from_pretrained(AutoConfig, encoder_dir)
    if any(a.endswith("ForSequenceClassification") for a in hf_config.architectures or []):
        load_task_teacher(encoder_dir, spec)   # checks it is one for this task
        return Path(encoder_dir)
    weights = Path(encoder_dir) / "model.safetensors"
    if not weights.is_file():
        raise ArtifactError(f"{encoder_dir} has no model.safetensors")
    # The teacher learns from the labels only: the distillation settings are fixed and left
    # out of the key, so one cached teacher serves every student.
    # (Settings added later are dropped from the key, so teachers cached before them stay valid.)
    protocol = config.replace(distill_weight=0.5, temperature=2.0, transfer_examples=0, augment_examples=0,
                              relation_weight=0.0)
    settings = {k: v for k, v in protocol.to_dict().items() if k != "relation_weight"}
    key = hashlib.sha256("".join([sha256_file(weights), sha256_file(Path(data_dir) / spec.name / "train.tsv"),
                                  json.dumps(settings, sort_keys=True)]).encode())
    folder = Path(cache_dir) / f"{spec.name}-{key.hexdigest()[:16]}"
    if (folder / "config.json").is_file():
        log.info("task teacher for %s: cached %s", spec.name, folder)
        return folder
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:   # swapped in only once complete
        result = finetune(Path(encoder_dir), data_dir, spec.name, protocol, device=device, out_dir=Path(tmp) / "model")
        (Path(tmp) / "model" / "teacher_scores.json").write_text(json.dumps(result, indent=1))
        try:
            (Path(tmp) / "model").rename(folder)
        except OSError:   # another process cached the same teacher meanwhile: keep that one
            if not (folder / "config.json").is_file():
                raise
    return folder


def evaluate_classifier(model, tokenizer, data_dir: Path, task: str, device: str = "cpu", max_len: int = 128) -> dict:
    """Score a loaded sequence classifier on a task's dev set (metrics in percent)."""
    spec, _, (dev_x, dev_y) = load_task(data_dir, task)
    ids, types = _encode(tokenizer, dev_x, max_len)
    return evaluate_model(model.to(device), spec, ids, types, dev_y, device)


def evaluate_dir(model_dir: Path, data_dir: Path, task: str, device: str = "cpu", max_len: int = 128) -> dict:
    """Score a fine-tuned sequence-classification folder on a task's dev set."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _check_model_dir(model_dir)
    tokenizer = _from_pretrained(AutoTokenizer, model_dir)
    model = _from_pretrained(AutoModelForSequenceClassification, model_dir, dtype=torch.float32, use_safetensors=True)
    return evaluate_classifier(model, tokenizer, data_dir, task, device, max_len)


def glue_average(results: dict[str, dict], which: str = "last") -> float:
    return float(np.mean([r[which]["score"] for r in results.values()]))
