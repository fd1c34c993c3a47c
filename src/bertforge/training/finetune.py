"""`bertforge finetune <kind>`: the one fine-tuning recipe, for every task on the shared training loop.

The recipe knows no task: the task (`bertforge.tasks`, picked by kind) reads its files, fixes its labels,
featurizes, names its head and what its loss is a sum over, post-processes and scores. The recipe does the
rest — tokenizer, cached features, length-grouped training batches with dynamic padding, evaluation at
every epoch (through the same `Predictor` as `bertforge predict`) keeping the best model as a
self-describing folder (`OUTPUT/best`), `eval_results.json`, predictions, and several seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import signal
import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from bertforge.errors import BertforgeError, Interrupted
from bertforge.fileio import atomic_write_text, cache_dir, holds_files, run_lock
from bertforge.inference.backends import TorchBackend
from bertforge.inference.files import jsonl_output, write_record
from bertforge.inference.predictor import Predictor
from bertforge.model_folder import (
    SETTINGS_FILE,
    VOCAB_FILE,
    ModelSettings,
    check_fits,
    check_labels,
    load_settings,
    save_model_folder,
)
from bertforge.tasks import get_task, kinds_by_head, settings
from bertforge.tasks.classification_metrics import format_metrics
from bertforge.tasks.task import FeatureDataset, Features, Task, TaskConfig, collate
from bertforge.tokenization import FullTokenizer
from bertforge.training import checkpoints, distributed, loop
from bertforge.training.config import LossScaleConfig, OptimizerConfig, TrainConfig

log = logging.getLogger("bertforge")

EVAL_CHUNK = 512  # dev examples featurized, run and post-processed at a time (bounds evaluation's memory)


@dataclass
class FinetuneConfig:
    kind: str = "classification"  # the task family (`bertforge finetune <kind>`)
    init: str | None = None  # the checkpoint to start from (anything from_pretrained reads)
    task: Any = None  # the task's config dataclass (see `config_class`)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, batch_size=32, save_checkpoint_steps=1_000_000, log_steps=20)
    )
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(
            name="adamw", learning_rate=2e-5, warmup_steps=0, warmup_proportion=0.1, weight_decay=0.01
        )
    )
    loss_scale: LossScaleConfig = field(default_factory=LossScaleConfig)
    seeds: list[int] = field(default_factory=list)  # several runs, mean ± std; empty: train.seed only
    do_train: bool = True
    do_eval: bool = True
    do_predict: bool = False


@functools.cache
def config_class(kind: str) -> type:
    """FinetuneConfig for `kind`: its defaults are the task's recipe (`Task.recipe`, what the shipped
    configs/finetune/<kind>.yaml also says), and its `task` section is built and checked by the task's own
    settings declarations (`bertforge.tasks.settings`)."""
    task = get_task(kind)
    base = FinetuneConfig()

    def section(name: str) -> Any:
        return field(default_factory=lambda: dataclasses.replace(getattr(base, name), **task.recipe.get(name, {})))

    return dataclasses.make_dataclass(
        f"{task.config.__name__}Finetune",
        [
            ("kind", str, field(default=kind)),
            ("task", dict[str, Any], field(default_factory=dict, metadata={"build": build_task_settings})),
            ("train", TrainConfig, section("train")),
            ("optimizer", OptimizerConfig, section("optimizer")),
        ],
        bases=(FinetuneConfig,),
    )


def build_task_settings(config: FinetuneConfig, raw: dict[str, Any], where) -> TaskConfig:
    """The `task:` section (merged from the YAML and `--task.KEY` overrides) as the task's typed settings,
    every value and the rules across them checked before anything runs."""
    tc = settings.build(get_task(config.kind).config, raw, where)
    try:
        tc.check(tc.max_seq_length)
    except BertforgeError as exc:
        sources = " and ".join(sorted({where(f"task.{key}") for key in raw})) or "defaults"
        raise BertforgeError(f"{sources}: {exc}") from None
    return tc


def config_yaml(config: FinetuneConfig) -> str:
    """The resolved configuration as YAML (what `OUTPUT/config.yaml` holds)."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------ features
def featurize_cached(
    task: Task, examples: list, path: str, tokenizer: FullTokenizer, settings: ModelSettings, tc: TaskConfig
) -> Features:
    """`task.featurize`, cached by file content + vocab + settings + the featurizing code (re-runs and seeds
    skip tokenizing; a changed featurizer or tokenizer never reads a stale cache; a damaged entry is rebuilt)."""
    options = {k: v for k, v in dataclasses.asdict(tc).items() if k not in ("train", "dev", "test", "eval_batch_size")}
    key = hashlib.sha256()
    for part in (
        Path(path).read_bytes(),
        Path(tokenizer.vocab_file).read_bytes(),
        Path(inspect.getfile(task.featurize)).read_bytes(),
        Path(inspect.getfile(FullTokenizer)).read_bytes(),
        json.dumps([task.kind, tokenizer.do_lower_case, settings.labels, settings.task, options], default=str).encode(),
    ):
        key.update(hashlib.sha256(part).digest())
    cached = cache_dir() / "features" / f"{key.hexdigest()}.json"
    if cached.is_file():
        try:
            return Features.from_json(json.loads(cached.read_text(encoding="utf-8")))
        except ValueError as exc:  # bad JSON, UTF-8 or shape: damaged on disk (it is written atomically)
            log.warning(f"{cached}: damaged feature cache entry ({exc}); rebuilding it")
    features = task.featurize(examples, tokenizer, settings, tc.max_seq_length)
    atomic_write_text(cached, json.dumps(features.to_json()))
    return features


def objective(task: Task) -> loop.Objective:
    """The head's loss terms, normalised by what `task.loss_count` says they are a sum over."""

    def summary(s: dict[str, torch.Tensor]) -> dict[str, float]:
        count = max(float(s["count"]), 1.0)
        return {"loss": float(s["loss_sum"]) / count} | (
            {"accuracy": float(s["correct"]) / count} if "correct" in s else {}
        )

    return loop.Objective(
        totals=lambda micro: {"count": sum(task.loss_count(mb) for mb in micro)},
        sums=lambda model, mb: model(**mb).terms,
        loss=lambda s, t: s["loss_sum"] / t["count"].clamp(min=1),
        summary=summary,
        tokens=lambda mb: int(mb["attention_mask"].sum()),
    )


# ------------------------------------------------------------------------------------------ recipe
def finetune(config: FinetuneConfig, output: str | Path, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Fine-tune (one seed or several) and return the dev metrics (with mean/std over seeds).

    The output directory is locked for the whole run. A SIGINT/SIGTERM during training saves a checkpoint
    and raises `Interrupted`, writing no final results; `resume=True` continues exactly where it stopped
    (finished seeds are kept, the interrupted one continues from its checkpoint, the rest run). Before or after
    training (checks, evaluation, predictions) a signal raises `Interrupted` too, unless the job's
    `eval_results.json` — written last, atomically — is there: then the job has finished and returns."""
    output = Path(output)
    lock = run_lock(output) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext()
    with lock, _stopping(output / "eval_results.json"):
        if not resume and config.do_train and holds_files(output):
            raise BertforgeError(
                f"{output} is not empty; choose a new --output (nothing is overwritten), or pass --resume to "
                "continue an interrupted run"
            )
        seeds = config.seeds or [config.train.seed]
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
            raise BertforgeError(f"--seeds must be integers >= 0, got {seeds}")
        if len(seeds) == 1:
            return _finetune_one(config, output, seeds[0], progress, resume)
        results = [_finetune_one(config, output / f"seed-{s}", s, progress, resume) for s in seeds]
        keys = [k for k, v in results[0].items() if isinstance(v, float)]
        summary = {
            k: {
                "mean": statistics.mean(r[k] for r in results),
                "std": statistics.stdev(r[k] for r in results),
                "values": [r[k] for r in results],
            }
            for k in keys
        }
        atomic_write_text(output / "eval_results.json", json.dumps({"seeds": seeds, **summary}, indent=2) + "\n")
        for k in keys:
            log.info(f"{k}: {summary[k]['mean']:.4f} ± {summary[k]['std']:.4f} over seeds {seeds}")
        return summary


@contextlib.contextmanager
def _stopping(final: Path) -> Iterator[None]:
    """SIGTERM/SIGINT outside the training loop (which has its own handler) raise `Interrupted` while the job's
    results are not final; once `final` exists, a signal only meets a finished job: logged, and the job returns
    normally. Either way the exit status says what happened: final results and 0, or none and 128 + signal."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if final.is_file():
            log.info(f"{name} after {final} was written: the job has finished")
            return
        raise Interrupted(signum, f"stopped before the results were final ({final} not written); rerun the job")

    with loop.stop_signals(handler):
        yield


def _init_settings(init: Path) -> ModelSettings | None:
    """The initial model's settings: its bertforge.json, or inferred from a transformers folder."""
    folder = init if init.is_dir() else init.parent
    if (folder / SETTINGS_FILE).is_file() or (folder / "config.json").is_file():
        return load_settings(folder, kinds_by_head(), announce=False)
    return None


def _read(task: Task, path: str | None, what: str, tc: TaskConfig) -> list:
    if path is None:
        raise BertforgeError(f"no {what} file: pass --{what}")
    return task.read(path, tc)


def _finetune_one(config: FinetuneConfig, output: Path, seed: int, progress: bool, resume: bool) -> dict[str, Any]:
    """One seed: check everything, then train (or continue), evaluate, predict. `OUTPUT/eval_results.json`
    is written last: it marks the seed as finished."""
    task, tc = get_task(config.kind), config.task
    done = output / "eval_results.json"
    if resume and done.is_file():
        log.info(f"{output}: finished before; kept as it is")
        return json.loads(done.read_text())
    method = tc.assessment_method or task.default_method
    if method not in task.methods:
        raise BertforgeError(f"assessment method {method!r} is not one of {', '.join(task.methods)} ({task.kind})")
    dist = distributed.setup(config.train.device)
    try:
        return _run_seed(config, task, tc, method, output, seed, progress, resume, dist)
    finally:
        distributed.teardown()


def _run_seed(config, task: Task, tc: TaskConfig, method: str, output: Path, seed, progress, resume, dist) -> dict:
    if config.init is None:
        raise BertforgeError("no initial checkpoint: pass --init (a pretrained or fine-tuned model)")
    init = Path(config.init)
    start = _init_settings(init)
    vocab = Path(tc.vocab) if tc.vocab else (init if init.is_dir() else init.parent) / VOCAB_FILE
    if not vocab.is_file():
        raise BertforgeError(f"no vocab: {vocab} does not exist; pass --task.vocab VOCAB")
    do_lower_case = tc.do_lower_case if tc.do_lower_case is not None else (start.do_lower_case if start else True)
    tokenizer = FullTokenizer(vocab, do_lower_case=do_lower_case)
    # Every input file is read and featurized, and every setting checked, before the first step.
    train_examples = _read(task, tc.train, "train", tc) if config.do_train else []
    same_task = start if start is not None and start.kind is not None and get_task(start.kind) is task else None
    settings = dataclasses.replace(
        task.prepare(tc, train_examples, same_task), do_lower_case=do_lower_case, max_seq_length=tc.max_seq_length
    )
    previous = checkpoints.latest_checkpoint(output) if resume and config.do_train else None
    torch.manual_seed(seed)
    model = task.head.from_pretrained(previous or init, **task.model_overrides(settings))
    check_fits(model.config, init, vocab, len(tokenizer), tc.max_seq_length)
    if same_task is not None and not config.do_train:
        check_labels(init, same_task, model.config.id2label)
    dev_examples = _read(task, tc.dev, "dev", tc) if (config.do_eval or config.do_train) and tc.dev else None
    # Featurized now for its problems and labels, a chunk at a time as evaluation streams it (memory does not
    # grow with the dev set).
    for start in range(0, len(dev_examples or ()), EVAL_CHUNK):
        chunk = dev_examples[start : start + EVAL_CHUNK]
        if len(task.featurize(chunk, tokenizer, settings, tc.max_seq_length).inputs) == 2:  # no targets
            raise BertforgeError(f"{tc.dev}: no labels; evaluation needs a labelled dev file (or pass --no-do-eval)")
    test_examples = _read(task, tc.test or tc.dev, "test", tc) if config.do_predict else None
    if test_examples is not None:
        task.featurize(test_examples, tokenizer, settings, tc.max_seq_length)  # its problems show up now
    train = featurize_cached(task, train_examples, tc.train, tokenizer, settings, tc) if config.do_train else None
    if train is not None and len(train.inputs) == 2:
        raise BertforgeError(f"{tc.train}: no labels; training needs a labelled file")
    if train is not None:
        loop.check_steps(len(train), config.train, dist.world_size)
    model.to(dist.device)
    dist.barrier()  # every process has checked OUTPUT (finetune's "not empty") before the main one writes there
    output.mkdir(parents=True, exist_ok=True)
    seeded = dataclasses.replace(config.train, seed=seed)
    if dist.is_main:  # the configuration as resolved (defaults, YAML, overrides), for the record
        atomic_write_text(output / "config.yaml", config_yaml(dataclasses.replace(config, train=seeded)))
    best_dir = output / "best"
    best = {"score": -float("inf")}
    if previous is not None and (best_dir / "eval_results.json").is_file():
        best = json.loads((best_dir / "eval_results.json").read_text())  # the best so far, from before the stop
    main_metric = task.methods[method]
    backend = TorchBackend(model, dist.device)

    def evaluate(step: int) -> dict[str, float]:
        """Dev scores through the prediction path (streamed: memory does not grow with the dev set)."""
        now = task.sync(model, settings)
        predictor = Predictor(task, now, tokenizer, backend, batch_size=tc.eval_batch_size, chunk_size=EVAL_CHUNK)
        results = [result for _, result in predictor.predict_examples(dev_examples)]
        metrics = {k: float(v) for k, v in task.score(results, dev_examples, now, method).items()}
        if dist.is_main and metrics[main_metric] > best["score"]:
            best.update(score=metrics[main_metric], step=step, metrics=metrics)
            extra = {"eval_results.json": json.dumps(best, indent=2)}
            save_model_folder(best_dir, model, task.tune(now, metrics), vocab, extra)
        return metrics

    if config.do_train:
        if train.num_truncated and dist.is_main:
            log.warning(f"{tc.train}: {train.num_truncated} examples truncated to {tc.max_seq_length} tokens")
        pad_to = tc.max_seq_length if tc.pad_to_max_length else None
        job = loop.Job(
            model,
            FeatureDataset(train),
            functools.partial(collate, pad_to=pad_to),
            objective(task),
            name="finetune",
            lengths=None if pad_to else train.lengths,  # length grouping only helps dynamic padding
            evaluate=evaluate if dev_examples else None,
            lr_multipliers=task.lr_multipliers(tc),
        )
        run = loop.setup(job, seeded, config.optimizer, config.loss_scale, output, dist, previous=previous)
        loop.train(run, progress)
        if not dev_examples and dist.is_main:  # nothing to choose by: the last model is the one kept
            save_model_folder(best_dir, model, task.sync(model, settings), vocab)
        dist.barrier()
        model = task.head.from_pretrained(best_dir).to(dist.device)
        backend = TorchBackend(model, dist.device)
    settings = task.sync(model, settings)
    model.eval()
    results: dict[str, Any] = {}
    if config.do_eval and dev_examples:
        results = evaluate(best.get("step", 0)) if not config.do_train else dict(best["metrics"])
        settings = task.tune(settings, results)  # what the kept model folder holds
        results = results | {"best_step": best.get("step", 0)}
        if dist.is_main:
            log.info(format_metrics({k: v for k, v in results.items() if k != "best_step"}))
    if test_examples is not None and dist.is_main:
        predictor = Predictor(task, settings, tokenizer, backend, batch_size=tc.eval_batch_size)
        written = write_predictions(predictor, test_examples, output, tc)
        log.info(f"predictions: {', '.join(map(str, written))}")
    if dist.is_main and (results or config.do_train):
        atomic_write_text(output / "eval_results.json", json.dumps(results, indent=2) + "\n")
    return results


def write_predictions(predictor: Predictor, examples: list, output: Path, tc: TaskConfig) -> list[Path]:
    """`predictions.jsonl` ({"guid", ...result} per example, input order) and the task's submission files."""
    results = []
    with jsonl_output(str(output / "predictions.jsonl"), overwrite=True) as stream:
        for example, result in predictor.predict_examples(examples):
            write_record(stream, {"guid": example.guid} | predictor.task.record(result))
            results.append(result)
    task = predictor.task
    return [output / "predictions.jsonl", *task.submissions(output, examples, results, predictor.settings, tc)]
