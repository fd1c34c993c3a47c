"""The model zoo's whole NER pipeline on real Chinese data, end to end: raw People's Daily text → pretraining
data (jieba whole-word or character masking, dynamic) → `bertforge pretrain` of a small BERT → fine-tuning on
MSRA NER (softmax, CRF, BiLSTM-CRF; several seeds) → entity F1 on MSRA's 5,000 test sentences, against the
same model fine-tuned from random initialisation.

Model selection uses the last `--dev-sentences` of msra_train.txt (not used for training); the test file is
scored once per run by the kept model (`finetune --no-do-train`). MSRA's sentences come from People's Daily
too, so the script also reports how many test sentences occur verbatim in the pretraining text.

Every head is fine-tuned from both initialisations with the same recipe. Fine-tuning runs go `--jobs` at a
time (one thread each); a run whose test score is already in the work folder is read, not repeated, so an
interrupted benchmark picks up where it stopped.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ner_msra.py [--pretrain-steps 6000[+8000]] [--masking wwm|char]
        [--seeds 1,2,3] [--jobs 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from bertforge.data.create import CreateOptions, create_pretraining_data  # noqa: E402
from bertforge.data.sentences import split_sentences  # noqa: E402
from bertforge.modeling import BertConfig, BertForPreTraining  # noqa: E402
from bertforge.samples import fetch  # noqa: E402
from bertforge.tasks.ner_readers import read_ner  # noqa: E402
from bertforge.training.config import load_config  # noqa: E402
from bertforge.training.finetune import config_class, finetune  # noqa: E402
from bertforge.training.pretrain import pretrain  # noqa: E402

MODEL = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512}
HEADS = {"softmax": [], "crf": ["task.crf=true"], "bilstm-crf": ["task.crf=true", "task.lstm_hidden_size=64"]}


def corpus(work: Path) -> Path:
    """People's Daily, POS tags stripped: a paragraph is a document, one sentence per line."""
    out = work / "peoples_daily.txt"
    if not out.exists():
        raw = fetch("peoples-daily").read_text(encoding="utf-8")
        with open(out, "w", encoding="utf-8") as f:
            for line in raw.splitlines():
                text = re.sub(r"/[A-Za-z]+", "", line).replace(" ", "").replace("[", "").replace("]", "")
                if text.strip():
                    f.write("\n".join(split_sentences(text)) + "\n\n")
    return out


def overlap(text_file: Path, sentences: list[str]) -> int:
    text = text_file.read_text(encoding="utf-8").replace("\n", "")
    return sum(s in text for s in sentences)


def pretrained(work: Path, phases: str, masking: str, lr: float, device: str) -> Path:
    """Pretrain (or find) the model. `phases` "6000" is one run of 6,000 steps; "6000+8000" continues its final
    weights for 8,000 more steps with a fresh warm-up and decay (as BERT's two phases) and new masks, so a longer
    pretraining reuses a shorter one. Each folder names everything it depends on."""
    data = work / f"data-{masking}"
    if not (data / "schema.json").exists():
        options = CreateOptions(
            max_seq_length=128, dupe_factor=1, dynamic_masking=True, whole_word_mask=masking == "wwm"
        )
        create_pretraining_data([corpus(work)], fetch("vocab-zh"), data, options, workers=2, progress=False)
    done: list[str] = []
    final = None
    for steps in phases.split("+"):
        done.append(steps)
        run = work / f"pretrain-{masking}-lr{lr:g}-{'+'.join(done)}"
        start, final = final, run / "checkpoints" / f"step-{int(steps):08d}"
        if final.exists():
            continue
        shutil.rmtree(run, ignore_errors=True)
        overrides = [f"model.{k}={v}" for k, v in MODEL.items()] + [
            "model.vocab_size=21128", f"train.train_steps={steps}", f"data.path={data}",
            "train.save_checkpoint_steps=1000", f"optimizer.learning_rate={lr}", "optimizer.warmup_steps=200",
            "train.log_steps=100", f"train.device={device}",
        ] + ([f"train.init_checkpoint={start}", f"data.seed={len(done) - 1}"] if start else [])  # fmt: skip
        pretrain(load_config(ROOT / "configs" / "pretrain" / "tiny.yaml", overrides), run, progress=False)
    return final


def random_init(work: Path) -> Path:
    root = work / "random-init"
    if not (root / "model.safetensors").exists():
        torch.manual_seed(0)
        BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=21128, **MODEL)).save_pretrained(root)
    return root


def with_vocab(checkpoint: Path) -> Path:
    shutil.copyfile(fetch("vocab-zh"), checkpoint / "vocab.txt")
    return checkpoint


def run(
    init: Path,
    head: str,
    seed: int,
    train: Path,
    dev: Path,
    test: Path,
    out: Path,
    epochs: int,
    lr: float,
    device: str,
) -> float:
    """Fine-tune, keep the best model on dev, then score it on the test file; returns test F1."""
    scored = out / "test" / "eval_results.json"
    if scored.exists():
        return json.loads(scored.read_text())["f1"]
    shutil.rmtree(out, ignore_errors=True)
    common = [
        "kind=ner",
        "task.max_seq_length=128",
        f"train.device={device}",
        "task.repair_tags=true",
    ]
    config = load_config(None, common + HEADS[head] + [
        f"init={init}", f"task.train={train}", f"task.dev={dev}", f"train.epochs={epochs}", f"train.seed={seed}",
        f"optimizer.learning_rate={lr}",
        "train.batch_size=32", "train.log_steps=50",
    ], config_class("ner"))  # fmt: skip
    finetune(config, out / "train", progress=False)
    scored = load_config(None, common + [f"init={out / 'train' / 'best'}", f"task.dev={test}", "do_train=false"],
                         config_class("ner"))  # fmt: skip
    return finetune(scored, out / "test", progress=False)["f1"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-steps", default="6000", help='steps, or phases "6000+8000" (see pretrained())')
    parser.add_argument(
        "--masking",
        choices=["wwm", "char"],
        default="wwm",
        help="pretraining masks whole jieba words (wwm) or single characters",
    )
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--train-sentences", type=int, default=5000)
    parser.add_argument("--dev-sentences", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--heads", default="softmax,crf,bilstm-crf")
    parser.add_argument("--jobs", type=int, default=2, help="fine-tuning runs at a time")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (results do not depend on it: runs are reused)")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_ner_msra"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    msra = fetch("msra-ner")
    train_lines = (msra / "msra_train.txt").read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n")
    train_lines = [s for s in train_lines if s.strip()]
    subset = work / f"train-{args.train_sentences}.txt"  # named by size: benchmarks of other sizes share `work`
    dev = work / f"dev-{args.dev_sentences}.txt"
    subset.write_text("\n\n".join(train_lines[: args.train_sentences]) + "\n", encoding="utf-8")
    dev.write_text("\n\n".join(train_lines[-args.dev_sentences :]) + "\n", encoding="utf-8")
    test = msra / "msra_test.txt"
    test_sentences = [e.text for e in read_ner(test)[0]]
    seen = overlap(corpus(work), test_sentences)
    print(f"MSRA test sentences found verbatim in the pretraining text: {seen} of {len(test_sentences)}")
    started = time.perf_counter()
    checkpoint = with_vocab(pretrained(work, args.pretrain_steps, args.masking, args.pretrain_lr, args.device))
    print(f"pretrained {args.pretrain_steps} steps in {time.perf_counter() - started:.0f} s: {checkpoint}")
    seeds = [int(s) for s in args.seeds.split(",")]
    inits = {"pretrained": checkpoint, "random init": with_vocab(random_init(work))}
    heads = args.heads.split(",")
    recipe = f"n{args.train_sentences}-e{args.epochs}-lr{args.learning_rate:g}"  # a run folder names all it depends on
    folder = {
        "pretrained": f"pretrained-{args.masking}-lr{args.pretrain_lr:g}-{args.pretrain_steps}-{recipe}",
        "random init": f"random-{recipe}",
    }
    jobs = {
        (name, head, seed): (init, head, seed, subset, dev, test, work / "runs" / f"{folder[name]}-{head}-{seed}",
                             args.epochs, args.learning_rate, args.device)
        for name, init in inits.items() for head in heads for seed in seeds
    }  # fmt: skip
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch threads inherited by a fork
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {key: pool.submit(run, *job) for key, job in jobs.items()}
        scores = {key: future.result() for key, future in futures.items()}
    report = {}
    for name in inits:
        for head in heads:
            f1 = [scores[(name, head, seed)] for seed in seeds]
            report[f"{name} {head}"] = f1
            spread = statistics.stdev(f1) if len(f1) > 1 else 0.0
            print(f"{name:12s} {head:11s} test F1 {statistics.mean(f1):.4f} ± {spread:.4f}  {f1}", flush=True)
    print(json.dumps({"test_overlap": seen, "f1": report, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
