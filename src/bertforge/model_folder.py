"""A self-describing model folder: weights and config, vocab, and `bertforge.json` saying how to use them.

`config.json` + `model.safetensors` stay loadable by `transformers` (labels in `id2label`); `vocab.txt` is
the vocab the model was trained with, and `tokenizer_config.json` + `special_tokens_map.json` make
transformers' `AutoTokenizer` read it as bertforge does (casing, maximum length); `bertforge.json` holds what
prediction needs and a transformers folder does not say reliably: the task kind, the labels, the tokenizer
settings (`do_lower_case` — a cased model evaluated later must not be lower-cased — and the vocab's SHA-256),
`max_seq_length`, task settings (e.g. regression) and the bertforge version. A folder without `bertforge.json`
(made by `transformers`) still works: its settings are inferred from `config.json` and `tokenizer_config.json`,
and said so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertforge import __version__
from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_dir, atomic_path, atomic_write_text, cache_dir
from bertforge.modeling.config import BertConfig
from bertforge.tokenization import vocab_is_cased
from bertforge.validation import Rule, unknown_key

log = logging.getLogger("bertforge")

SETTINGS_FILE = "bertforge.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE = "tokenizer_config.json", "special_tokens_map.json"
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}  # fmt: skip


FORMAT_VERSION = 2  # of bertforge.json; 1 (no "format_version") kept the task settings as an untyped mapping


@dataclass
class ModelSettings:
    kind: str | None  # task family (a key of `bertforge.tasks.TASKS`); None for a pretrained encoder
    labels: list[str] | None = None  # class/tag names in id order; None for regression and span tasks
    do_lower_case: bool = True
    max_seq_length: int = 512
    vocab_sha256: str | None = None
    task: Any = None  # the task's settings (its `TaskConfig`), those it keeps; None for a pretrained encoder
    version: str = __version__
    inferred: list[str] = field(default_factory=list)  # settings guessed for a folder without bertforge.json

    def to_json(self) -> str:
        from bertforge.tasks.settings import kept

        data = {"format_version": FORMAT_VERSION} | {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("task", "inferred")
        }
        data["task"] = kept(self.task) if self.task is not None else {}
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


_TOP_LEVEL = {
    "kind": Rule(str, optional=True),
    "labels": Rule(list, optional=True),
    "do_lower_case": Rule(bool),
    "max_seq_length": Rule(int, low=3),
    "vocab_sha256": Rule(str, optional=True),
    "version": Rule(str),
    "task": Rule(dict),
    "format_version": Rule(int, low=1),
}


def settings_from_json(data: Any, where: str) -> ModelSettings:
    """bertforge.json's content -> checked, typed settings; every problem names `where` (the file) and the key.
    Older formats are read too (version 1: settings that are no longer kept are dropped)."""
    from bertforge.tasks import get_task  # the registry imports this module
    from bertforge.tasks.settings import KEPT, build, declared

    if not isinstance(data, dict):
        raise BertforgeError(f"{where}: not a bertforge settings file (a JSON object expected)")
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            raise BertforgeError(f"{where}: {unknown_key(key, _TOP_LEVEL)}")
        try:
            _TOP_LEVEL[key].check(key, value)
        except BertforgeError as exc:
            raise BertforgeError(f"{where}: {exc}") from None
    version = data.get("format_version", 1)
    if version > FORMAT_VERSION:
        raise BertforgeError(
            f"{where}: settings format {version}, newer than this bertforge's ({FORMAT_VERSION}); upgrade bertforge"
        )
    labels = data.get("labels")
    if labels is not None and not all(isinstance(label, str) for label in labels):
        raise BertforgeError(f"{where}: labels must be a list of strings, got {labels!r}"[:200])
    settings = ModelSettings(**{k: v for k, v in data.items() if k not in ("task", "format_version")})
    if settings.kind is None:
        return settings
    config = get_task(settings.kind, where).config
    raw = dict(data.get("task", {}))
    if version == 1:
        raw = {k: v for k, v in raw.items() if k not in declared(config) or declared(config)[k].scope in KEPT}
    task = build(config, raw, where, scopes=KEPT)
    task = dataclasses.replace(task, max_seq_length=settings.max_seq_length, do_lower_case=settings.do_lower_case)
    try:
        task.check(settings.max_seq_length, settings.labels)
    except BertforgeError as exc:
        raise BertforgeError(f"{where}: {exc}") from None
    return dataclasses.replace(settings, task=task)


def tokenizer_files(settings: ModelSettings) -> dict[str, str]:
    """transformers' tokenizer files for the folder's vocab.txt, from the settings bertforge tokenizes with:
    `AutoTokenizer` then keeps a cased model cased (without the file it lower-cases) and knows the length the
    model takes (without it, 1e30: pipelines cut nothing and crash on a long text). Google's BasicTokenizer is
    transformers' BertTokenizer with these options (accents are stripped exactly when lower-casing)."""
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": settings.do_lower_case,
        "do_basic_tokenize": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": settings.max_seq_length,
        "clean_up_tokenization_spaces": True,
    } | SPECIAL_TOKENS
    return {
        TOKENIZER_CONFIG_FILE: json.dumps(config, indent=1) + "\n",
        SPECIAL_TOKENS_FILE: json.dumps(SPECIAL_TOKENS, indent=1) + "\n",
    }


def vocab_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_model_folder(
    directory: str | Path, model, settings: ModelSettings, vocab: str | Path, extra: dict[str, str] | None = None
) -> Path:
    """Write weights + config, the vocab, bertforge.json, transformers' tokenizer files and `extra` text files;
    the folder is replaced as a
    whole, so a kill while saving leaves the previous one. A model with a non-finite weight is refused: it
    must never replace a good one."""
    broken = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        raise BertforgeError(f"not saving {directory}: non-finite values in {', '.join(broken[:5])}")
    settings = dataclasses.replace(settings, vocab_sha256=vocab_sha256(vocab), version=__version__, inferred=[])
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(vocab, tmp / VOCAB_FILE)
        (tmp / SETTINGS_FILE).write_text(settings.to_json(), encoding="utf-8")
        for name, text in (tokenizer_files(settings) | (extra or {})).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return Path(directory)


def write_settings(directory: str | Path, settings: ModelSettings) -> None:
    atomic_write_text(Path(directory) / SETTINGS_FILE, settings.to_json())


def load_settings(folder: str | Path, kinds: dict[str, str] | None = None, announce: bool = True) -> ModelSettings:
    """The folder's bertforge.json, or settings inferred from a transformers folder (listed in `inferred`,
    and logged as a warning when `announce`). `kinds` maps a head class name (config.json's
    `architectures`) to a task kind."""
    folder = Path(folder)
    path = folder / SETTINGS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BertforgeError(f"{path}: not a bertforge settings file ({exc})") from None
        return settings_from_json(data, str(path))
    settings = infer_settings(folder, kinds or {})
    log.log(
        logging.WARNING if announce else logging.DEBUG,
        "%s has no %s; settings inferred: %s",
        folder,
        SETTINGS_FILE,
        "; ".join(settings.inferred),
    )
    return settings


def infer_settings(folder: Path, kinds: dict[str, str]) -> ModelSettings:
    """Settings of a folder written by `transformers`: the kind from `architectures`, labels from `id2label`,
    casing and length from `tokenizer_config.json` (lower-casing and 512 tokens when it is absent)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise BertforgeError(f"{folder}: no {SETTINGS_FILE} and no config.json; not a model folder")
    config = BertConfig.from_file(config_file)
    architectures = config.extra.get("architectures") or []
    kind = next((kinds[a] for a in architectures if a in kinds), None)
    tokenizer_file = folder / "tokenizer_config.json"
    tokenizer = json.loads(tokenizer_file.read_text(encoding="utf-8")) if tokenizer_file.is_file() else {}
    inferred = [f"kind={kind} (config.json architectures {architectures})"]
    labels, task = None, None
    if kind is not None:
        from bertforge.tasks import get_task  # the registry imports this module

        labels, task = get_task(kind).infer(config)
        inferred.append(f"labels {'from config.json id2label' if labels else 'none'}")
    normalizer = _tokenizer_json_normalizer(folder)
    if "do_lower_case" in tokenizer:
        do_lower_case = bool(tokenizer["do_lower_case"])
        inferred.append(f"do_lower_case={do_lower_case} (tokenizer_config.json)")
    elif "lowercase" in normalizer:
        do_lower_case = bool(normalizer["lowercase"])
        inferred.append(f"do_lower_case={do_lower_case} (tokenizer.json)")
    else:
        do_lower_case = True
        inferred.append("do_lower_case=True (no tokenizer_config.json saying otherwise)")
    limit = tokenizer.get("model_max_length")
    max_len = config.max_position_embeddings
    if isinstance(limit, int) and 0 < limit < max_len:
        max_len = limit
    inferred.append(f"max_seq_length={max_len}")
    if task is not None:
        task = dataclasses.replace(task, max_seq_length=max_len, do_lower_case=do_lower_case)
    return ModelSettings(kind, labels, do_lower_case, max_len, task=task, inferred=inferred)


def find_vocab(folder: Path) -> Path:
    """The folder's vocab.txt; for a folder with only a Hugging Face `tokenizer.json` (WordPiece), its
    vocabulary written out in id order (cached by content)."""
    vocab = folder / VOCAB_FILE
    if vocab.is_file():
        return vocab
    tokenizer = folder / "tokenizer.json"
    if not tokenizer.is_file():
        raise BertforgeError(f"{folder}: no {VOCAB_FILE} (nor tokenizer.json); a model folder holds its vocab")
    data = tokenizer.read_bytes()
    try:
        model = json.loads(data)["model"]
        tokens = sorted(model["vocab"], key=model["vocab"].get) if model["type"] == "WordPiece" else None
    except (json.JSONDecodeError, KeyError, TypeError):
        tokens = None
    if tokens is None:
        raise BertforgeError(f"{tokenizer}: not a WordPiece tokenizer.json; put the model's vocab.txt beside it")
    out = cache_dir() / "vocabs" / f"{hashlib.sha256(data).hexdigest()}.txt"
    if not out.is_file():
        atomic_write_text(out, "".join(t + "\n" for t in tokens))
    log.debug("%s: vocab taken from %s", folder, tokenizer)
    return out


def _tokenizer_json_normalizer(folder: Path) -> dict:
    try:
        normalizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")).get("normalizer")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return {}
    return normalizer if isinstance(normalizer, dict) else {}


def check_labels(folder: Path, settings: ModelSettings, id2label: dict[int, str] | None) -> None:
    """bertforge.json's labels and config.json's id2label must agree: swapped names would flip every prediction."""
    if settings.labels is None or id2label is None:
        return
    theirs = [id2label.get(i) for i in range(len(id2label))]
    if theirs != list(settings.labels):
        raise BertforgeError(
            f"{folder}: the labels in {SETTINGS_FILE} {settings.labels} and config.json's id2label {theirs} "
            "disagree; fix the one that was edited"
        )


def check_vocab(folder: Path, settings: ModelSettings, vocab: Path) -> None:
    """The vocab must be the one the model was trained with, when its hash is recorded."""
    if settings.vocab_sha256 is not None and vocab_sha256(vocab) != settings.vocab_sha256:
        raise BertforgeError(
            f"{vocab}: not the vocab this model was trained with ({folder / SETTINGS_FILE} records sha256 "
            f"{settings.vocab_sha256[:12]}…)"
        )


def check_fits(config: BertConfig, model: str | Path, vocab: Path, num_ids: int, max_seq_length: int | None) -> None:
    """A vocab and a length the model can take: as many ids as it has embedding rows (a mismatch would crash
    or silently mis-embed), and no more positions than it has (relative positions have no limit)."""
    if num_ids != config.vocab_size:
        raise BertforgeError(
            f"{vocab}: {num_ids} tokens, but the model in {model} has {config.vocab_size} embedding rows; "
            "use the model's own vocab"
        )
    positions = config.max_position_embeddings
    if max_seq_length is not None and not config.use_relative_positions and max_seq_length > positions:
        raise BertforgeError(
            f"--max-seq-length {max_seq_length} exceeds the {positions} positions of {model}; use at most {positions}"
        )


@dataclass(frozen=True)
class Conversion:
    """What `convert_checkpoint` wrote."""

    path: Path
    head: str  # the model class the checkpoint loads as (a key of `modeling.auto.MODEL_CLASSES`)
    parameters: int


def _conversion(model, path: Path) -> Conversion:
    from bertforge.modeling.auto import MODEL_CLASSES

    head = next(name for name, cls in MODEL_CLASSES.items() if type(model) is cls)
    return Conversion(Path(path), head, sum(p.numel() for p in model.parameters()))


def convert_checkpoint(
    source: str | Path,
    output: str | Path,
    *,
    to: str = "hf",
    config: str | Path | None = None,
    head: str = "auto",
    overwrite: bool = False,
    kinds: dict[str, str] | None = None,
) -> Conversion:
    """`bertforge convert`: load any checkpoint and write it as a model folder (weights, config, and — when
    the source has a vocab — vocab.txt and bertforge.json), a MindSpore `.ckpt`, or a TensorFlow checkpoint folder
    in Google's layout. A TensorFlow checkpoint becomes a model folder without building the model: its
    tensors are streamed into the weights file (`modeling.tf_to_safetensors`)."""
    from bertforge.modeling.auto import load_model
    from bertforge.modeling.tf_to_safetensors import save_tf_as_pretrained

    folder = Path(source) if Path(source).is_dir() else Path(source).parent
    has_vocab = (folder / VOCAB_FILE).is_file() or (folder / "tokenizer.json").is_file()
    if to in ("mindspore", "tf"):
        model = load_model(source, config=config, head=head)
        if to == "mindspore":
            return _conversion(model, model.save_mindspore(output, overwrite=overwrite))
        vocab = find_vocab(folder) if has_vocab else None
        return _conversion(model, model.save_tf(output, overwrite=overwrite, vocab=vocab))
    written = (VOCAB_FILE, SETTINGS_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE)
    extras = [Path(output) / name for name in written] if has_vocab else []
    existing = [str(p) for p in extras if p.exists()]
    if existing and not overwrite:
        raise BertforgeError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace")
    model = save_tf_as_pretrained(source, output, config=config, head=head, overwrite=overwrite)
    if model is None:
        model = load_model(source, config=config, head=head)
        model.save_pretrained(output, overwrite=overwrite)
    out = Path(output)
    if has_vocab:
        vocab = find_vocab(folder)
        if (folder / SETTINGS_FILE).is_file():
            settings = load_settings(folder)
        else:
            settings = (
                infer_settings(folder, kinds or {})
                if (folder / "config.json").is_file()
                else ModelSettings(None, do_lower_case=not vocab_is_cased(vocab))  # a TF release, a .ckpt
            )
        head_kind = (kinds or {}).get(type(model).__name__)
        settings = dataclasses.replace(
            settings,
            kind=settings.kind or head_kind,
            inferred=[],
            vocab_sha256=vocab_sha256(vocab),
            version=__version__,
        )
        with atomic_path(extras[0]) as tmp:  # a link named vocab.txt is replaced, never written through
            shutil.copyfile(vocab, tmp)
        write_settings(out, settings)
        for name, text in tokenizer_files(settings).items():
            atomic_write_text(Path(out) / name, text)
    return _conversion(model, out)
