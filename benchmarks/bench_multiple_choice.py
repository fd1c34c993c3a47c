"""Multiple choice on real SQuAD v1.1 questions: `bertforge finetune multiple-choice` against `transformers`'
`BertForMultipleChoice` + `Trainer`, for accuracy and training speed.

Data (no public package ships a multiple-choice set large enough to learn from, `../shared/DATA.md`): the 1,027
real questions of the first two SQuAD v1.1 training articles, split by paragraph as `bench_qa.py` splits them
(`split_paragraphs`, seed 0, 80/20: no passage on both sides). Each question becomes a four-way choice: its gold
answer and three *other questions'* gold answers from the same passage, drawn with `random.Random(0)` in file
order and shuffled. Distractors are distinct under SQuAD's answer normalisation and never contain, or sit
inside, the gold answer (so exactly one choice is right); a question with fewer than three such answers in its
passage is left out. The context of a question is, by default (`--context sentence`), the sentence of its
passage that holds the gold answer, as GLUE's QNLI cuts SQuAD passages into sentences (a distractor may occur
in it too; the others occur elsewhere in the passage), or the whole passage (`--context passage`). The
questions are written as CLUE C3 JSON (`[[context], [{"question", "choice", "answer"}], id]`, one record per
question) so that bertforge reads them through its public C3 reader; the first `--train-questions` of the
training side (file order) are used to train, cut to whole batches.

Recipe, the same for both: all-MiniLM-L6-v2, each choice as the pair (context, question + " " + choice) cut
longest-first to `--max-len`, dynamic padding (`run_swag.py`'s default, `DataCollatorForMultipleChoice`;
bertforge's length-grouped batches), batch 8 questions, `--epochs`, `--lr`, AdamW (eps 1e-8, weight decay 0.01
off biases and LayerNorm), warm-up 10% then linear decay, gradient clipping 1.0.

For seeds 1, 2, 3, alternating bertforge and `transformers` (so machine-speed drift hits both):
- bertforge: `finetune` (the Python API of `bertforge finetune multiple-choice`) trains without a dev set (the
  final model is kept, as `Trainer` keeps its final model), then `finetune` with `do_train=false` evaluates the
  kept model on the dev file, and `bertforge predict` — a separate process, on JSON lines written here from the
  questions, not through the C3 reader — predicts the dev questions; the script scores those predictions
  against the gold indices it built and checks they equal finetune's evaluation.
- `transformers`: the same questions tokenized by `BertTokenizerFast` (the same vocab and pairs), `Trainer` with
  `DataCollatorForMultipleChoice`, accuracy of `trainer.predict` on the dev questions.
Training examples/s: epochs × training questions / seconds of everything training needs (bertforge: the whole
`finetune` call — reading, tokenizing with a fresh feature cache, training, saving; `transformers`: tokenizing,
loading the model, `trainer.train()`); the ratio of the medians.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_multiple_choice.py [--seeds 1,2,3] [--train-questions 800]
        [--context sentence|passage] [--epochs 2] [--lr 5e-5] [--max-len 128] [--smoke] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from bertforge.samples import fetch  # noqa: E402
from bertforge.tasks.qa_metrics import normalize_answer  # noqa: E402
from bertforge.tasks.qa_readers import split_paragraphs  # noqa: E402
from bertforge.training.config import load_config  # noqa: E402
from bertforge.training.finetune import config_class, finetune  # noqa: E402

SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"
LR, EPOCHS, BATCH, MAX_LEN, WARMUP, WEIGHT_DECAY, EPS, CHOICES = 5e-5, 2, 8, 128, 0.1, 0.01, 1e-8, 4
SMOKE = 0  # --smoke: a few questions and one epoch, to check the script itself


@dataclass
class Question:
    passage: str
    question: str
    choices: list[str]
    label: int  # index of the gold answer in `choices`
    ident: str


# ------------------------------------------------------------------------------------------------ data
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def answer_sentence(passage: str, answer: dict) -> str:
    """The sentence(s) of `passage` holding the answer, as GLUE's QNLI cuts SQuAD passages into sentences."""
    start = answer["answer_start"]
    if passage[start : start + len(answer["text"])] != answer["text"]:
        start = passage.find(answer["text"])
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(passage)), len(passage)]
    first = max(b for b in bounds if b <= start)
    last = min(b for b in bounds if b >= start + len(answer["text"]))
    return passage[first:last].strip()


def questions(document: dict, rng: random.Random, context: str) -> tuple[list[Question], int]:
    """(the questions of `document` as four-way choices; questions left out for want of three distractors)."""
    flat, left_out = [], 0
    for article in document["data"]:
        for p in article["paragraphs"]:
            gold = [q["answers"][0]["text"].strip() for q in p["qas"]]
            for i, q in enumerate(p["qas"]):
                mine = normalize_answer(gold[i])
                seen, others = {mine}, []
                for j, text in enumerate(gold):
                    norm = normalize_answer(text)
                    if j == i or not norm or norm in seen or norm in mine or mine in norm:
                        continue
                    seen.add(norm)
                    others.append(text)
                if len(others) < CHOICES - 1:
                    left_out += 1
                    continue
                choices = [gold[i], *rng.sample(others, CHOICES - 1)]
                rng.shuffle(choices)
                passage = p["context"] if context == "passage" else answer_sentence(p["context"], q["answers"][0])
                flat.append(Question(passage, q["question"].strip(), choices, choices.index(gold[i]), q["id"]))
    return flat, left_out


def c3(qs: list[Question]) -> list[list]:
    """CLUE C3 JSON records, one per question: `[[passage], [{"question", "choice", "answer"}], id]`."""
    return [[[q.passage], [{"question": q.question, "choice": q.choices, "answer": q.choices[q.label]}], q.ident]
            for q in qs]  # fmt: skip


def build(out: Path, train_questions: int, context: str) -> dict:
    """train.json / dev.json (C3), dev.jsonl (predict's input) and the questions of each side."""
    with zipfile.ZipFile(fetch("xglue-mlqa-dummy")) as zf:
        train_doc, dev_doc = split_paragraphs(json.loads(zf.read(SQUAD_V1)), 0.8, seed=0)
    rng = random.Random(0)
    train_qs, train_out = questions(train_doc, rng, context)
    dev_qs, dev_out = questions(dev_doc, rng, context)
    # the first questions in file order, a whole number of batches (bertforge drops a last partial batch, Trainer
    # does not: with whole batches both see every question once an epoch)
    count = min(train_questions, len(train_qs))
    train_qs = train_qs[: count - count % BATCH]
    if SMOKE:
        dev_qs = dev_qs[:SMOKE]
    for name, qs in (("train.json", train_qs), ("dev.json", dev_qs)):
        (out / name).write_text(json.dumps(c3(qs), ensure_ascii=False), encoding="utf-8")
    with open(out / "dev.jsonl", "w", encoding="utf-8") as f:
        for q in dev_qs:
            f.write(json.dumps({"context": q.passage, "question": q.question, "choices": q.choices}) + "\n")
    info = {"context": context, "train_questions": len(train_qs), "dev_questions": len(dev_qs),
            "left_out_train_side": train_out, "left_out_dev_side": dev_out}  # fmt: skip
    print(f"data: {info}")
    return {"train": train_qs, "dev": dev_qs, "info": info}


# ------------------------------------------------------------------------------------------------ bertforge
BERTFORGE = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); from bertforge.cli import main; "
             "sys.exit(main(sys.argv[1:]))", str(ROOT / "src")]  # fmt: skip


def recipe() -> list[str]:
    return [
        f"task.max_seq_length={MAX_LEN}", f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}", "train.device=cpu",
        f"optimizer.learning_rate={LR}", f"optimizer.warmup_proportion={WARMUP}", "optimizer.warmup_steps=0",
        f"optimizer.weight_decay={WEIGHT_DECAY}", f"optimizer.eps={EPS}", "optimizer.clip_norm=1.0",
        "task.eval_batch_size=32",
    ]  # fmt: skip


def ours(work: Path, out: Path, seed: int, dev_gold: list[int]) -> dict:
    """Train on train.json (final model kept), evaluate it with `finetune`, and predict dev.jsonl with the CLI."""
    overrides = [f"init={fetch('minilm')}", f"task.train={work / 'train.json'}", f"train.seed={seed}", "do_eval=false"]
    config = load_config(None, [*overrides, *recipe()], config_class("multiple-choice"))
    before = os.environ.get("BERTFORGE_CACHE")
    os.environ["BERTFORGE_CACHE"] = str(out / "cache")  # a fresh feature cache: tokenizing is timed every run
    try:
        start = time.perf_counter()
        finetune(config, out / "train", progress=False)
        trained = time.perf_counter() - start
    finally:
        os.environ.pop("BERTFORGE_CACHE") if before is None else os.environ.update(BERTFORGE_CACHE=before)
    best = out / "train" / "best"
    config = load_config(None, [f"init={best}", f"task.dev={work / 'dev.json'}", "do_train=false", *recipe()],
                         config_class("multiple-choice"))  # fmt: skip
    evaluated = finetune(config, out / "eval", progress=False)["accuracy"]
    predicted = out / "predict.jsonl"
    subprocess.run(
        [*BERTFORGE, "predict", "--model", str(best), "--input", str(work / "dev.jsonl"), "--output", str(predicted),
         "--quiet", "--batch-size", "32", "--threads", str(torch.get_num_threads())],
        check=True,
    )  # fmt: skip
    labels = [json.loads(line)["label"] for line in predicted.read_text(encoding="utf-8").splitlines()]
    assert len(labels) == len(dev_gold), (len(labels), len(dev_gold))
    accuracy = sum(a == b for a, b in zip(labels, dev_gold)) / len(dev_gold)
    return {"train_s": trained, "accuracy": evaluated, "predict_accuracy": accuracy}


def deploy(work: Path, best: Path, dev: list[Question], predicted: Path) -> dict:
    """`bertforge export` of a kept model (checked against PyTorch on the dev file) and `bertforge serve` of the
    ONNX folder answering one dev question over HTTP as `bertforge predict` did."""
    onnx = work / "onnx"
    subprocess.run([*BERTFORGE, "export", "--model", str(best), "--output", str(onnx), "--dev",
                    str(work / "dev.json"), "--overwrite"], check=True)  # fmt: skip
    report = json.loads((onnx / "export_report.json").read_text(encoding="utf-8"))
    graphs = {name: {"max_abs_diff": max(r["max_abs_diff"].values()), "agreement": r["agreement"],
                     "dev_delta_points": r["dev"]["delta_points"]}
              for name, r in report.items() if isinstance(r, dict) and "max_abs_diff" in r}  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*BERTFORGE, "serve", "--model", str(onnx), "--backend", "onnx", "--port", str(port)])
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                time.sleep(1)
        q = dev[0]
        body = json.dumps({"inputs": {"context": q.passage, "question": q.question, "choices": q.choices}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", body, {"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.terminate()
        server.wait(timeout=60)
    first = json.loads(predicted.read_text(encoding="utf-8").splitlines()[0])
    answer = answer[0] if isinstance(answer, list) else answer
    return {"graphs": graphs, "served": answer, "served_equals_predict": answer["label"] == first["label"]}


# ------------------------------------------------------------------------------------------------ transformers
def hf(data: dict, out: Path, seed: int) -> dict:
    import transformers

    model_dir = fetch("minilm")
    tok = transformers.BertTokenizerFast(str(model_dir / "vocab.txt"), do_lower_case=True)
    keys = ("input_ids", "token_type_ids", "attention_mask")

    def rows(qs: list[Question]) -> list[dict]:
        """One row per question: each key a (choices, tokens) list, as run_swag's preprocessing makes them."""
        enc = tok([q.passage for q in qs for _ in q.choices], [f"{q.question} {c}" for q in qs for c in q.choices],
                  truncation="longest_first", max_length=MAX_LEN)  # fmt: skip
        return [{k: enc[k][CHOICES * i : CHOICES * (i + 1)] for k in keys} | {"labels": q.label}
                for i, q in enumerate(qs)]  # fmt: skip

    collator = transformers.DataCollatorForMultipleChoice(tok)
    padded = []

    def counting(batch):
        out = collator(batch)
        padded.append(out["input_ids"].numel())
        return out

    args = transformers.TrainingArguments(
        output_dir=str(out), learning_rate=LR, per_device_train_batch_size=BATCH, per_device_eval_batch_size=32,
        num_train_epochs=EPOCHS, warmup_steps=WARMUP, weight_decay=WEIGHT_DECAY, adam_epsilon=EPS, max_grad_norm=1.0,
        seed=seed, save_strategy="no", report_to=[], use_cpu=True, logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    start = time.perf_counter()
    train_rows = rows(data["train"])
    transformers.set_seed(seed)
    model = transformers.BertForMultipleChoice.from_pretrained(model_dir)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train_rows, data_collator=counting)
    trainer.train()
    trained = time.perf_counter() - start
    train_padded = sum(padded)
    logits = trainer.predict(rows(data["dev"])).predictions
    accuracy = float((logits.argmax(-1) == [q.label for q in data["dev"]]).mean())
    real = sum(len(ids) for r in train_rows for ids in r["input_ids"]) * EPOCHS
    return {"train_s": trained, "accuracy": accuracy, "padded_tokens": train_padded, "real_tokens": real}


def same_inputs(work: Path, data: dict) -> None:
    """Check that bertforge (C3 reader + featurize) and `BertTokenizerFast` give both sides the same token ids, token
    types and labels, so that the comparison is of training, not of inputs."""
    import transformers

    from bertforge.tasks import multiple_choice
    from bertforge.tasks.multiple_choice_readers import read_multiple_choice
    from bertforge.tokenization import FullTokenizer

    vocab = fetch("minilm") / "vocab.txt"
    tok = transformers.BertTokenizerFast(str(vocab), do_lower_case=True)
    for side in ("train", "dev"):
        examples = read_multiple_choice(work / f"{side}.json")[0]
        tc = multiple_choice.MultipleChoiceConfig(max_seq_length=MAX_LEN)
        settings = multiple_choice.prepare(tc, examples, None)
        ours = multiple_choice.featurize(examples, FullTokenizer(vocab), settings, MAX_LEN).inputs
        qs = data[side]
        enc = tok([q.passage for q in qs for _ in q.choices], [f"{q.question} {c}" for q in qs for c in q.choices],
                  truncation="longest_first", max_length=MAX_LEN)  # fmt: skip
        assert ours["labels"] == [q.label for q in qs], side
        for i, (ids, types, mask) in enumerate(zip(ours["input_ids"], ours["token_type_ids"], ours["attention_mask"])):
            for k in range(CHOICES):
                n = sum(mask[k])
                assert ids[k][:n] == enc["input_ids"][CHOICES * i + k], (side, i, k)
                assert types[k][:n] == enc["token_type_ids"][CHOICES * i + k], (side, i, k)
        print(f"{side}: the same token ids, token types and labels on both sides ({CHOICES * len(qs)} pairs)")


# ------------------------------------------------------------------------------------------------ report
def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}%"
    return f"{100 * statistics.mean(values):.2f}% ± {100 * statistics.stdev(values):.2f}"


def main() -> None:
    global SMOKE, EPOCHS, LR, MAX_LEN
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--train-questions", type=int, default=800, help="questions to train on (file order)")
    parser.add_argument("--context", choices=("sentence", "passage"), default="sentence",
                        help="the answer's sentence (as GLUE's QNLI) or the whole passage")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--max-len", type=int, default=MAX_LEN)
    parser.add_argument("--smoke", action="store_true", help="a few questions, one epoch: check the script runs")
    parser.add_argument("--work", type=Path, help="keep the data and models here (default: a temporary folder)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    EPOCHS, LR, MAX_LEN = args.epochs, args.lr, args.max_len
    if args.smoke:
        SMOKE, EPOCHS, args.train_questions = 8, 1, 24
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, recipe: lr {LR}, {EPOCHS} epochs, batch {BATCH}, "
          f"max length {MAX_LEN}, warm-up {WARMUP}, weight decay {WEIGHT_DECAY}, eps {EPS}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = build(work, args.train_questions, args.context)
        same_inputs(work, data)
        gold = [q.label for q in data["dev"]]
        runs: dict[str, list[dict]] = {"bertforge": [], "transformers": []}
        for seed in seeds:  # alternating, so that drifts in machine speed hit both
            r = ours(work, work / f"ours-{seed}", seed, gold)
            runs["bertforge"].append(r)
            print(f"seed {seed} bertforge: {r}", flush=True)
            r = hf(data, work / f"hf-{seed}", seed)
            runs["transformers"].append(r)
            print(f"seed {seed} transformers: {r}", flush=True)
        seed = seeds[0]
        served = deploy(
            work, work / f"ours-{seed}" / "train" / "best", data["dev"], work / f"ours-{seed}" / "predict.jsonl"
        )
        print(f"seed {seed} bertforge model exported and served: {served}", flush=True)
    n = len(data["train"]) * EPOCHS
    speed = {name: [n / r["train_s"] for r in rs] for name, rs in runs.items()}
    a, b = runs["bertforge"], runs["transformers"]
    acc_a, acc_b = [r["accuracy"] for r in a], [r["accuracy"] for r in b]
    same = all(r["accuracy"] == r["predict_accuracy"] for r in a)
    print(f"dev accuracy ({len(gold)} questions, chance 25%): bertforge {summary(acc_a)}, transformers "
          f"{summary(acc_b)}; difference {100 * (statistics.mean(acc_a) - statistics.mean(acc_b)):+.2f} points; "
          f"bertforge predict = finetune's evaluation for every seed: {same}")  # fmt: skip
    ratios = [x / y for x, y in zip(speed["bertforge"], speed["transformers"])]
    ma, mb = statistics.median(speed["bertforge"]), statistics.median(speed["transformers"])
    print(f"training examples/s: bertforge {', '.join(f'{x:.2f}' for x in speed['bertforge'])} (median {ma:.2f}); "
          f"transformers {', '.join(f'{x:.2f}' for x in speed['transformers'])} (median {mb:.2f}); ratio of medians "
          f"{ma / mb:.2f}x; per round {', '.join(f'{x:.2f}x' for x in ratios)}")  # fmt: skip
    print(json.dumps({"data": data["info"], "runs": runs, "speed": speed, "ratio": ma / mb, "deploy": served}))


if __name__ == "__main__":
    main()
