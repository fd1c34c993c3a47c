"""NER fine-tuning speed: `bertforge finetune ner` against the `transformers` token-classification recipe.

Same model (a MiniLM-shaped BERT — 6 layers, hidden 384, 12 heads — with Google's Chinese vocab, one random
initialisation saved once and loaded by both), same data (the first `--sentences` sentences of MSRA's real
`msra_train.txt`, characters with BMES tags), same recipe (1 epoch, batch 32, lr 5e-5, AdamW, max length 128):
(a) `bertforge finetune ner` (softmax head; dynamic padding, length-grouped batches; sentences longer than 126
characters become windows); (b) `transformers`' `Trainer` with `DataCollatorForTokenClassification` (dynamic
padding; `run_ner.py`'s alignment: the first sub-token of each character labelled, truncation at 128). Prints
training examples/s of each and the ratio (median of `--repeats`), and the tokens each one trained on.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_ner_finetune.py [--sentences 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from bertforge.modeling import BertConfig, BertForPreTraining  # noqa: E402
from bertforge.samples import fetch  # noqa: E402
from bertforge.tasks import ner  # noqa: E402
from bertforge.tasks.ner_readers import read_ner  # noqa: E402
from bertforge.tokenization import FullTokenizer  # noqa: E402
from bertforge.training.config import load_config  # noqa: E402
from bertforge.training.finetune import config_class, finetune  # noqa: E402

LR, BATCH, MAX_LEN = 5e-5, 32, 128
SHAPE = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}


def data(work: Path, sentences: int) -> Path:
    """The first `sentences` sentences of msra_train.txt, as they are (CRLF, BMES)."""
    lines, count = [], 0
    with open(fetch("msra-ner") / "msra_train.txt", encoding="utf-8", newline="") as f:
        for line in f:
            lines.append(line)
            count += not line.strip()
            if count == sentences:
                break
    path = work / "train.txt"
    path.write_text("".join(lines), encoding="utf-8", newline="")
    return path


def model(work: Path) -> Path:
    torch.manual_seed(0)
    folder = work / "init"
    BertForPreTraining(BertConfig.from_preset("bert-base", vocab_size=21128, **SHAPE)).save_pretrained(folder)
    shutil.copyfile(fetch("vocab-zh"), folder / "vocab.txt")
    return folder


def ours(train: Path, init: Path, out: Path) -> tuple[float, int]:
    """(training examples/s, tokens trained on)."""
    config = load_config(None, [
        f"init={init}", f"task.train={train}", f"task.max_seq_length={MAX_LEN}", "train.epochs=1",
        f"train.batch_size={BATCH}", f"optimizer.learning_rate={LR}", "train.device=cpu", "do_eval=false",
    ], config_class("ner"))  # fmt: skip
    tc = ner.NerConfig(max_seq_length=MAX_LEN)
    examples = ner.read(str(train), tc)  # tags in the file's detected scheme (BMES here)
    start = time.perf_counter()
    finetune(config, out, progress=False)
    seconds = time.perf_counter() - start
    features = ner.featurize(examples, FullTokenizer(init / "vocab.txt"), ner.prepare(tc, examples, None), MAX_LEN)
    return len(examples) / seconds, int(features.lengths.sum())


def hf(train: Path, init: Path, out: Path) -> tuple[float, int]:
    import transformers

    examples = read_ner(train)[0]
    labels = sorted({t for e in examples for t in e.tags})
    tok = transformers.BertTokenizerFast(str(init / "vocab.txt"), do_lower_case=True)
    enc = tok([e.tokens for e in examples], is_split_into_words=True, truncation=True, max_length=MAX_LEN)
    rows = []
    for i, e in enumerate(examples):
        previous, row = None, []
        for word in enc.word_ids(i):  # run_ner.py: the first sub-token of each word, -100 elsewhere
            row.append(-100 if word is None or word == previous else labels.index(e.tags[word]))
            previous = word
        rows.append({"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                     "attention_mask": enc["attention_mask"][i], "labels": row})  # fmt: skip
    transformers.set_seed(1)
    net = transformers.BertForTokenClassification.from_pretrained(init, num_labels=len(labels))
    args = transformers.TrainingArguments(
        output_dir=str(out), learning_rate=LR, per_device_train_batch_size=BATCH, num_train_epochs=1,
        warmup_steps=0.1, weight_decay=0.01, seed=1, save_strategy="no", report_to=[], use_cpu=True,
        logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    collator = transformers.DataCollatorForTokenClassification(tok)
    trainer = transformers.Trainer(model=net, args=args, train_dataset=rows, data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return len(rows) / seconds, sum(len(r["input_ids"]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, init = data(work, args.sentences), model(work)
        runs = {"bertforge": [], "transformers": []}
        for r in range(args.repeats):  # interleaved, so that drifts in machine speed hit both
            runs["bertforge"].append(ours(train, init, work / f"ours-{r}"))
            runs["transformers"].append(hf(train, init, work / f"hf-{r}"))
    a = statistics.median(x for x, _ in runs["bertforge"])
    b = statistics.median(x for x, _ in runs["transformers"])
    print(f"NER fine-tuning, {args.sentences} MSRA sentences, 1 epoch, batch {BATCH}, {torch.get_num_threads()} "
          f"threads: bertforge {a:.1f} examples/s ({runs['bertforge'][0][1]} tokens), transformers Trainer + "
          f"DataCollatorForTokenClassification {b:.1f} ({runs['transformers'][0][1]} tokens): {a / b:.2f}x "
          f"(median of {args.repeats})")  # fmt: skip
    print(json.dumps({"bertforge": runs["bertforge"], "transformers": runs["transformers"], "ratio": a / b}))


if __name__ == "__main__":
    main()
