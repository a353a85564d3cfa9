"""The shipped AutoDistil student: a searched, extracted MiniLM student fine-tuned on SST-2
(fp16, ``terse/pretrained/autodistil-sst2``), for ``terse demo`` and quick use."""

from __future__ import annotations

from pathlib import Path

from terse.core.errors import ArtifactError

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "autodistil-sst2"
LABELS = ("negative", "positive")


def load_shipped_student(folder: Path = SHIPPED):
    """-> (sequence classifier in fp32 eval mode, tokenizer, manifest info). Verifies sha256."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from terse.autodistil.extract import verify_student

    if not (Path(folder) / "manifest.json").is_file():
        raise ArtifactError(f"{folder} holds no shipped AutoDistil student")
    manifest = verify_student(folder)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                               dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer, manifest.get("info", {})


def classify(model, tokenizer, texts: list[str]) -> list[tuple[str, float]]:
    """Sentiment label and its probability for each text."""
    import torch

    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(model(**enc).logits.float(), -1)
    return [(LABELS[int(p.argmax())], float(p.max())) for p in probs]
