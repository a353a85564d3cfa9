"""Tiny BERT teachers, tokenizers, corpora and GLUE folders for the AutoDistil tests (built in code)."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("the a cat dog sat on mat good bad movie film great awful is was not very it and of to in "
         "man woman plays guitar sings sun rises yes no").split()


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    args = dict(vocab_size=5 + len(WORDS) + 3, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
    args.update(overrides)
    return BertConfig(**args)


def make_tiny_teacher(folder: Path, seed: int = 0, **overrides) -> Path:
    """Write a random tiny BertModel + a WordPiece tokenizer over WORDS to ``folder``."""
    from transformers import BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = BertModel(tiny_bert_config(**overrides))
    model.save_pretrained(folder, safe_serialization=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ",", "!"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(folder)
    return folder


def make_corpus(folder: Path, sentences: int = 400, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + " ." for _ in range(sentences)]
        (folder / f"{name}.txt").write_text("\n".join(lines))
    return folder


def make_glue(folder: Path, seed: int = 0) -> Path:
    """SST-2 and STS-B shaped folders whose labels follow simple word rules."""
    import random

    rng = random.Random(seed)
    folder = Path(folder)
    for split, count in (("train", 64), ("dev", 24)):
        sst = ["sentence\tlabel"]
        sts = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
        for i in range(count):
            good = rng.random() < 0.5
            word = rng.choice(["good", "great"] if good else ["bad", "awful"])
            sst.append(f"the movie is very {word} .\t{int(good)}")
            sts.append(f"{i}\tg\tf\t2012\t{i}\tnone\tnone\tthe cat sat\tthe {rng.choice(['cat', 'dog'])} sat\t"
                       f"{rng.uniform(0, 5):.3f}")
        (folder / "SST-2").mkdir(parents=True, exist_ok=True)
        (folder / "STS-B").mkdir(parents=True, exist_ok=True)
        (folder / "SST-2" / f"{split}.tsv").write_text("\n".join(sst) + "\n")
        (folder / "STS-B" / f"{split}.tsv").write_text("\n".join(sts) + "\n")
    return folder
