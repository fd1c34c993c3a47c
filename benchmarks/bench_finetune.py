"""Fine-tuning all-MiniLM-L6-v2 on Pang & Lee sentence polarity: bertforge against `transformers`.

1. Accuracy (`--part accuracy`): the same recipe — real MiniLM weights, our fixed 80/20 split, epochs,
   learning rate 5e-5, batch 32, max length 128, warm-up 10%, weight decay 0.01, AdamW, seeds 1, 2, 3 —
   with `bertforge finetune` and with `transformers`' `Trainer`; dev accuracy after the last epoch, mean
   over the seeds. bertforge keeps its best epoch, so with one epoch both report the same model.
2. Throughput (`--part speed`): training examples per second over one epoch of the same data with
   (a) `bertforge finetune` (dynamic padding, length-grouped batches), (b) the same loop padding every
   batch to 128 (`task.pad_to_max_length`, what the model zoo does), (c) `Trainer` with `run_glue`'s
   defaults (padding to max length), and the settings a `transformers` user who cares about speed picks:
   (d) `Trainer` with dynamic padding (`DataCollatorWithPadding`) and (e) dynamic padding plus
   `group_by_length=True`. Ratios of (a) to each are printed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_finetune.py [--part accuracy|speed|both] [--epochs 1]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bertforge.samples import fetch  # noqa: E402
from bertforge.training.config import load_config  # noqa: E402
from bertforge.training.finetune import config_class, finetune  # noqa: E402

LR, BATCH, MAX_LEN = 5e-5, 32, 128


def split(out: Path) -> tuple[Path, Path]:
    """Pang & Lee (labels 1/-1) shuffled with seed 0 into 80% train, 20% dev, as text,label CSVs."""
    with open(fetch("polarity-en"), encoding="utf-8-sig", newline="") as f:
        rows = [(text.strip(), "pos" if label == "1" else "neg") for label, text in csv.reader(f)]
    random.Random(0).shuffle(rows)
    cut = int(0.8 * len(rows))
    paths = []
    for name, part in (("train.csv", rows[:cut]), ("dev.csv", rows[cut:])):
        with open(out / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(part)
        paths.append(out / name)
    return paths[0], paths[1]


def ours(train: Path, dev: Path, out: Path, seed: int, epochs: int, pad: bool = False) -> tuple[float, float]:
    """(dev accuracy, training examples/s)."""
    config = load_config(
        None,
        [
            f"init={fetch('minilm')}",
            f"task.train={train}",
            f"task.dev={dev}",
            f"task.max_seq_length={MAX_LEN}",
            f"train.epochs={epochs}",
            f"train.batch_size={BATCH}",
            f"train.seed={seed}",
            "train.device=cpu",
            f"optimizer.learning_rate={LR}",
            f"task.pad_to_max_length={str(pad).lower()}",
        ],
        config_class("classification"),
    )
    start = time.perf_counter()
    results = finetune(config, out, progress=False)
    seconds = time.perf_counter() - start
    examples = sum(1 for _ in open(train)) - 1
    return results["accuracy"], epochs * examples / seconds


def grouped(transformers) -> dict:
    """`Trainer`'s length-grouped sampler: `train_sampling_strategy` since transformers 5, `group_by_length` before."""
    fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def hf(
    train: Path, dev: Path, out: Path, seed: int, epochs: int, pad_to_max: bool, group_by_length: bool = False
) -> tuple[float, float]:
    import numpy as np
    import transformers
    from torch.utils.data import Dataset

    model_dir = fetch("minilm")
    tok = transformers.BertTokenizerFast(str(model_dir / "vocab.txt"), do_lower_case=True)

    class Rows(Dataset):
        def __init__(self, path):
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            padding = "max_length" if pad_to_max else False
            self.enc = tok([r["text"] for r in rows], truncation=True, max_length=MAX_LEN, padding=padding)
            self.labels = [1 if r["label"] == "pos" else 0 for r in rows]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {k: v[i] for k, v in self.enc.items()} | {"labels": self.labels[i]}

    transformers.set_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        learning_rate=LR,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64,
        num_train_epochs=epochs,
        warmup_steps=0.1,
        weight_decay=0.01,
        adam_epsilon=1e-6,
        seed=seed,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
        **(grouped(transformers) if group_by_length else {}),
    )
    train_set, dev_set = Rows(train), Rows(dev)
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=transformers.DataCollatorWithPadding(tok),
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return trainer.evaluate()["eval_accuracy"], epochs * len(train_set) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["accuracy", "speed", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, dev = split(tmp)
        if args.part in ("accuracy", "both"):
            a = [ours(train, dev, tmp / f"ours-{s}", s, args.epochs)[0] for s in seeds]
            b = [hf(train, dev, tmp / f"hf-{s}", s, args.epochs, pad_to_max=False)[0] for s in seeds]
            report["accuracy"] = {"bertforge": a, "transformers": b}
            print(
                f"dev accuracy over seeds {seeds}, {args.epochs} epoch(s): bertforge "
                f"{statistics.mean(a):.4f} ± {statistics.stdev(a):.4f} {a}; transformers "
                f"{statistics.mean(b):.4f} ± {statistics.stdev(b):.4f} {b}; "
                f"difference {100 * (statistics.mean(a) - statistics.mean(b)):+.2f} points"
            )
        if args.part in ("speed", "both"):
            dynamic = ours(train, dev, tmp / "speed-dynamic", 1, 1)[1]
            padded = ours(train, dev, tmp / "speed-pad128", 1, 1, pad=True)[1]
            trainer = hf(train, dev, tmp / "speed-hf", 1, 1, pad_to_max=True)[1]
            trainer_dynamic = hf(train, dev, tmp / "speed-hf-dynamic", 1, 1, pad_to_max=False)[1]
            trainer_grouped = hf(train, dev, tmp / "speed-hf-grouped", 1, 1, pad_to_max=False, group_by_length=True)[1]
            report["speed"] = {
                "dynamic": dynamic,
                "pad128": padded,
                "trainer_pad128": trainer,
                "trainer_dynamic": trainer_dynamic,
                "trainer_dynamic_grouped": trainer_grouped,
            }
            print(
                f"training examples/s (one epoch, {BATCH} per batch): bertforge {dynamic:.1f}; same loop padded "
                f"to {MAX_LEN}: {padded:.1f} ({dynamic / padded:.2f}x); transformers Trainer (run_glue defaults, "
                f"pad to max length): {trainer:.1f} ({dynamic / trainer:.2f}x); Trainer with dynamic padding: "
                f"{trainer_dynamic:.1f} ({dynamic / trainer_dynamic:.2f}x); with dynamic padding and "
                f"group_by_length: {trainer_grouped:.1f} ({dynamic / trainer_grouped:.2f}x)"
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
