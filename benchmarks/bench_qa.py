"""Extractive QA on real SQuAD v1.1 questions: bertforge against the `transformers` question-answering recipe.

Data: the 1,027 real questions of the first two SQuAD v1.1 training articles (`../shared/DATA.md`), split by
paragraph — the 121 paragraphs shuffled with seed 0, 80% train, 20% dev — so no dev context is seen in training.

1. Accuracy and time (`--part accuracy`): all-MiniLM-L6-v2 fine-tuned with `run_qa.py`'s defaults (lr 3e-5,
   2 epochs, batch 12, max length 384, doc stride 128, no warm-up, no weight decay, linear decay) by
   (a) `bertforge finetune qa` and (b) `transformers`' `Trainer` on features built as `run_qa.py` builds them
   (padding to 384, `stride=128` as the tokenizer's overlap) and post-processed as its `utils_qa.py` does; both
   scored by the official SQuAD v1.1 rules. Seeds 1, 2, 3: dev EM/F1 of the final model (mean ± std), training and
   evaluation seconds, and their ratios. (`doc_stride` means the step between windows in bertforge and the
   overlap in `run_qa.py`; SQuAD contexts rarely need a second window at 384, so the windows nearly coincide.)
2. Post-processing (`--part postprocess`): the same logits (bertforge's model on the dev set, repeated to 20x)
   through `bertforge.tasks.qa.postprocess` and through a per-example loop in the style of `transformers`'
   examples (`postprocess_qa_predictions`: top-20 start × top-20 end indices, filters, sort); time ratio and
   how often their answers agree.
3. Memory (`--part memory`): peak RSS (VmHWM) of evaluating a fine-tuned model (`bertforge finetune qa --no-do-train`)
   on the dev set and on a 20x larger one (every paragraph repeated with new question ids), each in a fresh
   process, against the model's own working set (peak while evaluating the dev set minus the process before
   the model was loaded).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_qa.py [--part accuracy|postprocess|memory|all]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bertforge.samples import fetch  # noqa: E402
from bertforge.tasks import qa  # noqa: E402
from bertforge.tasks.qa_metrics import squad_v1_scores  # noqa: E402
from bertforge.tasks.qa_readers import read_qa, split_paragraphs  # noqa: E402
from bertforge.training.config import load_config  # noqa: E402
from bertforge.training.finetune import config_class, finetune  # noqa: E402

SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"
LR, EPOCHS, BATCH, MAX_LEN, STRIDE, N_BEST, MAX_ANSWER = 3e-5, 2, 12, 384, 128, 20, 30
SMOKE = 0  # --smoke: a few paragraphs, to check the script itself


def split(out: Path, copies: int = 1) -> tuple[Path, Path]:
    """train.json / dev.json by paragraph (seed 0, 80/20); `copies` > 1 repeats the dev paragraphs with new ids."""
    with zipfile.ZipFile(fetch("xglue-mlqa-dummy")) as zf:
        train, dev = split_paragraphs(json.loads(zf.read(SQUAD_V1)), 0.8, seed=0)
    train["data"], dev["data"] = train["data"][: SMOKE or None], dev["data"][: SMOKE // 3 or None]
    if copies > 1:
        dev["data"] = [
            {"title": a["title"], "paragraphs": [p | {"qas": [q | {"id": f"{q['id']}-{c}"} for q in p["qas"]]}]}
            for c in range(copies)
            for a in dev["data"]
            for p in a["paragraphs"]
        ]
    for name, document in (("train.json", train), ("dev.json", dev)):
        (out / name).write_text(json.dumps(document), encoding="utf-8")
    return out / "train.json", out / "dev.json"


# ------------------------------------------------------------------------------------------------ bertforge
def ours_config(overrides: list[str]):
    return load_config(None, overrides, config_class("qa"))


def ours(train: Path, dev: Path, out: Path, seed: int) -> tuple[dict, float, float]:
    """(dev scores of the final model, training seconds, evaluation seconds)."""
    common = [
        f"task.max_seq_length={MAX_LEN}",
        f"task.doc_stride={STRIDE}",
        "train.device=cpu",
        "task.eval_batch_size=32",
    ]
    config = ours_config([
        f"init={fetch('minilm')}", f"task.train={train}", f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}",
        f"train.seed={seed}", f"optimizer.learning_rate={LR}", "optimizer.warmup_proportion=0",
        "optimizer.warmup_steps=0", "optimizer.weight_decay=0", "optimizer.eps=1e-8", "do_eval=false", *common,
    ])  # fmt: skip
    start = time.perf_counter()
    finetune(config, out / "train", progress=False)
    trained = time.perf_counter() - start
    config = ours_config([f"init={out / 'train' / 'best'}", f"task.dev={dev}", "do_train=false", *common])
    start = time.perf_counter()
    scores = finetune(config, out / "eval", progress=False)
    return scores, trained, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ transformers
def hf_features(tok, examples, train: bool) -> dict:
    """Features as `run_qa.py` prepares them: question first, context truncated `only_second` into overlapping
    windows (`stride` = overlap), padded to max length; training targets [CLS] when the answer is not inside."""
    enc = tok([e.question.lstrip() for e in examples], [e.context for e in examples], truncation="only_second",
              max_length=MAX_LEN, stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")  # fmt: skip
    owners = enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping")
    if train:
        starts, ends = [], []
        for i, n in enumerate(owners):
            seq = enc.sequence_ids(i)
            text, a = examples[n].answers[0]
            b = a + len(text)
            first = seq.index(1)
            last = len(seq) - 1 - seq[::-1].index(1)
            if not (offsets[i][first][0] <= a and offsets[i][last][1] >= b):
                starts.append(0), ends.append(0)
                continue
            s = first
            while s <= last and offsets[i][s][0] <= a:
                s += 1
            e = last
            while e >= first and offsets[i][e][1] >= b:
                e -= 1
            starts.append(s - 1), ends.append(e + 1)
        enc["start_positions"], enc["end_positions"] = starts, ends
    else:
        enc["offsets"] = [[o if enc.sequence_ids(i)[k] == 1 else None for k, o in enumerate(offs)]
                          for i, offs in enumerate(offsets)]  # fmt: skip
        enc["example"] = owners
    return enc


def loop_postprocess(examples, owners, offsets, start_logits, end_logits, n_best=N_BEST, max_len=MAX_ANSWER):
    """Per example, per feature: the n-best start and end indices, every pair filtered in Python (out of the
    context, end before start, too long), sorted by score — the `postprocess_qa_predictions` way."""
    by_example = collections.defaultdict(list)
    for f, n in enumerate(owners):
        by_example[n].append(f)
    answers = {}
    for n, example in enumerate(examples):
        candidates = []
        for f in by_example[n]:
            s, e, offs = start_logits[f], end_logits[f], offsets[f]
            for i in np.argsort(s)[-1 : -n_best - 1 : -1].tolist():
                for j in np.argsort(e)[-1 : -n_best - 1 : -1].tolist():
                    if i >= len(offs) or j >= len(offs) or offs[i] is None or offs[j] is None:
                        continue
                    if j < i or j - i + 1 > max_len:
                        continue
                    candidates.append((s[i] + e[j], offs[i][0], offs[j][1]))
        best = sorted(candidates, key=lambda c: c[0], reverse=True)[:n_best]
        answers[example.qid] = example.context[best[0][1] : best[0][2]] if best else ""
    return answers


def hf(train: Path, dev: Path, out: Path, seed: int) -> tuple[dict, float, float]:
    import torch
    import transformers

    model_dir = fetch("minilm")
    tok = transformers.BertTokenizerFast(str(model_dir / "vocab.txt"), do_lower_case=True)
    train_examples, dev_examples = read_qa(train)[0], read_qa(dev)[0]

    class Rows(torch.utils.data.Dataset):
        def __init__(self, enc, keys):
            self.enc, self.keys = enc, keys

        def __len__(self):
            return len(self.enc["input_ids"])

        def __getitem__(self, i):
            return {k: self.enc[k][i] for k in self.keys}

    inputs = ["input_ids", "token_type_ids", "attention_mask"]
    transformers.set_seed(seed)
    model = transformers.BertForQuestionAnswering.from_pretrained(model_dir)
    args = transformers.TrainingArguments(
        output_dir=str(out), learning_rate=LR, per_device_train_batch_size=BATCH, per_device_eval_batch_size=32,
        num_train_epochs=EPOCHS, seed=seed, save_strategy="no", report_to=[], use_cpu=True,
        logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    start = time.perf_counter()
    features = hf_features(tok, train_examples, train=True)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Rows(features, [*inputs, "start_positions", "end_positions"])
    )
    trainer.train()
    trained = time.perf_counter() - start
    start = time.perf_counter()
    dev_features = hf_features(tok, dev_examples, train=False)
    start_logits, end_logits = trainer.predict(Rows(dev_features, inputs)).predictions
    answers = loop_postprocess(dev_examples, dev_features["example"], dev_features["offsets"], start_logits, end_logits)
    scores = squad_v1_scores(dev_examples, answers)
    return scores, trained, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ parts
def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def accuracy(tmp: Path, seeds: list[int]) -> dict:
    train, dev = split(tmp)
    runs = {"bertforge": [ours(train, dev, tmp / f"ours-{s}", s) for s in seeds]}
    runs["transformers"] = [hf(train, dev, tmp / f"hf-{s}", s) for s in seeds]
    report = {}
    for name, results in runs.items():
        report[name] = {
            "exact": [r[0]["exact"] for r in results], "f1": [r[0]["f1"] for r in results],
            "train_s": [r[1] for r in results], "eval_s": [r[2] for r in results],
        }  # fmt: skip
        r = report[name]
        print(
            f"{name}: dev EM {summary(r['exact'])}, F1 {summary(r['f1'])} over seeds {seeds}; training "
            f"{statistics.median(r['train_s']):.1f} s, evaluation {statistics.median(r['eval_s']):.1f} s (medians)"
        )
    a, b = report["bertforge"], report["transformers"]
    print(
        f"F1 difference {statistics.mean(a['f1']) - statistics.mean(b['f1']):+.2f} points; training time ratio "
        f"{statistics.median(b['train_s']) / statistics.median(a['train_s']):.2f}x, evaluation "
        f"{statistics.median(b['eval_s']) / statistics.median(a['eval_s']):.2f}x (transformers / bertforge)"
    )
    return report


def postprocess(tmp: Path, model: Path | None) -> dict:
    from bertforge.inference import Predictor
    from bertforge.inference.predictor import run_features

    train, dev = split(tmp, copies=20)
    if model is None:
        ours(train, split(tmp)[1], tmp / "pp", 1)
        model = tmp / "pp" / "train" / "best"
    predictor = Predictor.from_pretrained(model, batch_size=32)
    examples = read_qa(dev)[0]
    unique = {e.qid.split("-")[0]: e for e in examples}
    features = qa.featurize(list(unique.values()), predictor.tokenizer, predictor.settings, MAX_LEN)
    outputs = run_features(predictor.backend, features, 32, qa.TASK.token_outputs)
    # the same logits for every copy: 20x the dev set
    index = {qid: n for n, qid in enumerate(unique)}
    copy_of = [index[e.qid.split("-")[0]] for e in examples]
    by_example = collections.defaultdict(list)
    for f, n in enumerate(features.example_index):
        by_example[n].append(f)
    order = [f for n in copy_of for f in by_example[n]]
    big = qa.Features(
        {k: [v[f] for f in order] for k, v in features.inputs.items()},
        [m for m, n in enumerate(copy_of) for _ in by_example[n]],
        meta={k: [v[f] for f in order] for k, v in features.meta.items()},
    )
    big_outputs = [outputs[f] for f in order]
    times = {"bertforge": [], "loop": []}
    for _ in range(3):
        start = time.perf_counter()
        results = qa.postprocess(examples, big, big_outputs, predictor.settings)
        times["bertforge"].append(time.perf_counter() - start)
        # the loop's input layout: offsets per input position (None outside the context), logits padded to 384
        start = time.perf_counter()
        offsets = []
        for f in range(len(big)):
            first, _ = big.meta["window"][f]
            row = [None] * len(big_outputs[f]["start_logits"])
            flat = big.meta["offsets"][f]
            row[first : first + len(flat) // 2] = list(zip(flat[::2], flat[1::2]))
            offsets.append(row)
        s = np.full((len(big), MAX_LEN), -1e4, np.float32)
        e = np.full((len(big), MAX_LEN), -1e4, np.float32)
        for f, out in enumerate(big_outputs):
            s[f, : len(out["start_logits"])], e[f, : len(out["end_logits"])] = out["start_logits"], out["end_logits"]
        setup = time.perf_counter() - start
        start = time.perf_counter()
        answers = loop_postprocess(examples, big.example_index, offsets, s, e)
        times["loop"].append(time.perf_counter() - start)
    agree = np.mean([r.answer == answers[ex.qid] for ex, r in zip(examples, results)])
    a, b = statistics.median(times["bertforge"]), statistics.median(times["loop"])
    print(f"post-processing {len(examples)} questions ({len(big)} windows): bertforge {a:.3f} s, per-example loop "
          f"{b:.3f} s (median of 3; its layout conversion, {setup:.3f} s, not counted): {b / a:.1f}x; same answer "
          f"for {agree:.1%}")  # fmt: skip
    return {"questions": len(examples), "windows": len(big), "bertforge_s": a, "loop_s": b, "agree": float(agree)}


def memory(tmp: Path, model: Path | None) -> dict:
    if model is None:
        train, dev = split(tmp)
        ours(train, dev, tmp / "mem", 1)
        model = tmp / "mem" / "train" / "best"
    report = {}
    for copies in (1, 20):
        folder = tmp / f"copies-{copies}"
        folder.mkdir(exist_ok=True)
        _, dev = split(folder, copies)
        code = (
            "import json, sys, time; sys.path.insert(0, sys.argv[1]); "
            "from bertforge.training.config import load_config; "
            "from bertforge.training.finetune import config_class, finetune; "
            "import torch; "
            "hwm = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024; "
            "before = hwm(); "
            "c = load_config(None, [f'init={sys.argv[2]}', f'task.dev={sys.argv[3]}', 'do_train=false', "
            "'train.device=cpu', 'task.eval_batch_size=32'], config_class('qa')); "
            "t = time.perf_counter(); s = finetune(c, sys.argv[4], progress=False); t = time.perf_counter() - t; "
            "print(json.dumps({'before_mb': before, 'peak_mb': hwm(), 'f1': s['f1'], 'seconds': t}))"
        )
        out = subprocess.run([sys.executable, "-c", code, str(ROOT / "src"), str(model), str(dev), str(folder / "out")],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        report[copies] = json.loads(out.strip().splitlines()[-1]) | {"questions": len(read_qa(dev)[0])}
    one, twenty = report[1], report[20]
    working = one["peak_mb"] - one["before_mb"]
    growth = twenty["peak_mb"] - one["peak_mb"]
    print(f"evaluation peak RSS: {one['peak_mb']:.0f} MB for {one['questions']} questions, {twenty['peak_mb']:.0f} MB "
          f"for {twenty['questions']} (20x): +{growth:.0f} MB, against the model's working set of {working:.0f} MB "
          f"(peak evaluating the dev set minus the process before loading the model); F1 {one['f1']:.2f} and "
          f"{twenty['f1']:.2f}")  # fmt: skip
    return {"copies": report, "working_set_mb": working, "growth_mb": growth}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["accuracy", "postprocess", "memory", "all"], default="all")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument(
        "--model", type=Path, help="a fine-tuned QA folder for postprocess/memory (else one is trained)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few paragraphs: check that the script runs")
    args = parser.parse_args()
    global SMOKE
    SMOKE = 6 if args.smoke else 0
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.part in ("accuracy", "all"):
            report["accuracy"] = accuracy(tmp, seeds)
            args.model = args.model or tmp / f"ours-{seeds[0]}" / "train" / "best"
        if args.part in ("postprocess", "all"):
            report["postprocess"] = postprocess(tmp, args.model)
        if args.part in ("memory", "all"):
            report["memory"] = memory(tmp, args.model)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
