"""AutoDistil (Xu et al., NeurIPS 2022): a weight-sharing BERT supernet distilled from a
teacher, searched for the best student under a compute budget, students extracted as plain
Hugging Face models.

    >>> from terse.autodistil import load_student
    >>> load_student().classify(["a wonderful , moving and funny film ."])[0][0]   # the shipped SST-2 student
    'positive'

A supernet trained by ``terse autodistil train-supernet --out runs/tiny``::

    supernet = load_supernet("runs/tiny/supernet")
    best = supernet.search(max_macs_fraction=0.25).best     # scored against the MiniLM teacher
    supernet.extract(best, "student")                       # loads with transformers.AutoModel

Names are resolved lazily so ``import terse.autodistil`` does not import torch or transformers.
"""

from terse.core.exports import lazy_exports

_EXPORTS = {
    "Supernet": "terse.autodistil.api",
    "SearchResult": "terse.autodistil.api",
    "load_supernet": "terse.autodistil.api",
    "train_supernet": "terse.autodistil.api",
    "Student": "terse.autodistil.shipped",
    "load_student": "terse.autodistil.shipped",
    "DistillConfig": "terse.autodistil.distill",
    "train_subnets": "terse.autodistil.distill",
    "heldout_losses": "terse.autodistil.distill",
    "read_corpus_ids": "terse.autodistil.corpus",
    "CorpusStream": "terse.autodistil.corpus",
    "relation_loss": "terse.autodistil.distill",
    "extract_student": "terse.autodistil.extract",
    "verify_student": "terse.autodistil.extract",
    "FinetuneConfig": "terse.autodistil.glue",
    "finetune": "terse.autodistil.glue",
    "evaluate_dir": "terse.autodistil.glue",
    "Constraint": "terse.autodistil.search",
    "NoSubnetError": "terse.autodistil.search",
    "measure_latency_ms": "terse.autodistil.search",
    "pareto_front": "terse.autodistil.search",
    "select": "terse.autodistil.search",
    "SearchSpace": "terse.autodistil.space",
    "SubnetConfig": "terse.autodistil.space",
    "TeacherShape": "terse.autodistil.space",
    "costs": "terse.autodistil.space",
    "default_spaces": "terse.autodistil.space",
    "ElasticBert": "terse.autodistil.supernet",
    "load_teacher": "terse.autodistil.teacher",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
