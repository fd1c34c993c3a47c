"""`make quickstart`: the furthest end-to-end path bertforge has, on bundled defaults and real sample material.

1. tokenize Chinese and English sentences with Google-exact WordPiece (real vocabularies);
2. build a tiny BERT and a tiny NEZHA and run them on the padded batch;
3. load real pretrained weights (all-MiniLM-L6-v2) and compare sentence embeddings;
4. convert those weights to a MindSpore model-zoo .ckpt and back, checking the outputs do not change;
5. turn a real Wikipedia dump into sentence-per-line text, build a pretraining dataset and inspect it;
6. pretrain a tiny BERT on that dataset for a few hundred steps, evaluate it and plot its loss;
7. fine-tune that tiny BERT on real sentence polarity (a demo of the recipe: a tiny model learns little);
8. fine-tune the real MiniLM weights on the same data and predict new sentences with `bertforge predict`;
9. fine-tune MiniLM for extractive QA on real SQuAD questions and answer two questions about a held-out passage;
10. train a tiny Chinese NER model (BERT + CRF) on real MSRA sentences and find entities in raw text;
11. export step 8's classifier to ONNX (verified against PyTorch), predict with ONNX Runtime and serve it over HTTP.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import torch

from bertforge.data.create import CreateOptions, create_pretraining_data
from bertforge.data.dataset import PretrainingDataset
from bertforge.data.inspect import dataset_statistics, format_record
from bertforge.data.wiki import extract_wiki
from bertforge.modeling import BertConfig, BertForPreTraining, BertModel
from bertforge.samples import fetch
from bertforge.tasks.qa_readers import split_paragraphs
from bertforge.tokenization import FullTokenizer
from bertforge.training.config import load_config
from bertforge.training.finetune import config_class, finetune
from bertforge.training.metrics_log import read_metrics
from bertforge.training.plot import plot_run
from bertforge.training.pretrain import evaluate, pretrain

ROOT = Path(__file__).resolve().parents[1]
SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"
# run_qa.py's recipe, made to fit a quickstart: a higher learning rate, windows of 192 (most contexts fit)
QA_RECIPE = ["train.epochs=2", "train.batch_size=16", "optimizer.learning_rate=1e-4", "task.max_seq_length=192",
             "task.doc_stride=64", "optimizer.warmup_proportion=0", "optimizer.weight_decay=0"]  # fmt: skip
PASSAGE = (  # a SQuAD paragraph in the held-out part of the split
    "The College of Arts and Letters was established as the university's first college in 1842 with the first "
    "degrees given in 1849. The university's first academic curriculum was modeled after the Jesuit Ratio "
    "Studiorum from Saint Louis University. Today the college, housed in O'Shaughnessy Hall, includes 20 "
    "departments in the areas of fine arts, humanities, and social sciences, and awards Bachelor of Arts (B.A.) "
    "degrees in 33 majors, making it the largest of the university's colleges. There are around 2,500 "
    "undergraduates and 750 graduates enrolled in the college."
)

NER_TEXTS = ["国务院总理李鹏今天在北京会见了日本外务大臣。", "新华社记者王小平报道：上海浦东新区的建设进展顺利。"]
CHINESE = ["自然语言处理是人工智能的一个重要方向。", "今天北京的天气很好，我们去颐和园散步吧！"]
ENGLISH = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply on Tuesday.",
]


def step(title: str) -> None:
    print(f"\n== {title}")


def bertforge(*args, show: bool = False) -> list[str]:
    """Run `bertforge ARGS` as a user would type it (printed first): its output lines, or shown as it runs."""
    args = [str(a) for a in args]
    print("$ bertforge " + shlex.join(args))
    command = [sys.executable, "-m", "bertforge", *args]
    if show:
        subprocess.run(command, check=True)
        return []
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()


def padded(tokenizer: FullTokenizer, texts: list[str], max_length: int = 64) -> dict[str, torch.Tensor]:
    """Encode and pad to the longest text in the batch (dynamic padding)."""
    encs = tokenizer.encode_batch(texts, max_length=max_length).encodings
    width = max(len(e.input_ids) for e in encs)
    ids = torch.zeros(len(encs), width, dtype=torch.long)
    types, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for row, e in enumerate(encs):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        types[row, :n] = torch.tensor(e.token_type_ids)
        mask[row, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask[..., None].float()
    return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)


def main() -> None:
    handler = logging.StreamHandler(sys.stdout)  # the library logs its progress notes; show them here
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("bertforge").addHandler(handler)
    logging.getLogger("bertforge").setLevel(logging.INFO)
    torch.manual_seed(0)
    step("1. Tokenization (Google BERT semantics, Rust speed)")
    zh = FullTokenizer(fetch("vocab-zh"), do_lower_case=True)
    en = FullTokenizer(fetch("vocab-en"), do_lower_case=True)
    print(f"Chinese vocab: {len(zh)} tokens, English vocab: {len(en)} tokens")
    for text in CHINESE:
        print(f"  {text}\n    -> {' '.join(zh.tokenize(text))}")
    for text in ENGLISH[:2] + ["Ångström's café costs ＄12 — naïve résumé 😀"]:
        print(f"  {text}\n    -> {' '.join(en.tokenize(text))}")

    step("2. A tiny BERT and a tiny NEZHA on a padded batch")
    batch = padded(zh, CHINESE)
    real = batch["attention_mask"].sum(1).tolist()
    print(f"batch: input_ids {tuple(batch['input_ids'].shape)}, real tokens per row {real}")
    for name, extra in (("BERT", {}), ("NEZHA", {"use_relative_positions": True})):
        config = BertConfig.from_preset("tiny", vocab_size=len(zh), **extra)
        model = BertForPreTraining(config).eval()
        with torch.no_grad():
            out = model(
                **batch,
                next_sentence_labels=torch.tensor([0, 1]),
                masked_lm_positions=torch.tensor([[1, 2], [3, 4]]),
                masked_lm_ids=batch["input_ids"][:, 1:3],
            )
        params = sum(p.numel() for p in model.parameters())
        print(
            f"  tiny {name}: {params / 1e6:.2f}M parameters, MLM logits {tuple(out.mlm_logits.shape)}, "
            f"NSP logits {tuple(out.nsp_logits.shape)}, untrained loss {out.loss.item():.3f}"
        )

    step("3. Real pretrained weights: all-MiniLM-L6-v2")
    t0 = time.perf_counter()
    minilm = BertModel.from_pretrained(fetch("minilm")).eval()
    c = minilm.config
    print(
        f"loaded {c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab {c.vocab_size} "
        f"in {time.perf_counter() - t0:.2f}s"
    )
    batch = padded(en, ENGLISH)
    with torch.no_grad():
        out = minilm(**batch)
    emb = mean_pool(out.last_hidden_state, batch["attention_mask"])
    sims = emb @ emb.T
    print(f"cosine(guitar, guitar paraphrase) = {sims[0, 1]:.3f}   cosine(guitar, stock market) = {sims[0, 2]:.3f}")
    if not sims[0, 1] > sims[0, 2]:
        raise SystemExit("quickstart: the pretrained model did not rank the paraphrase closer")

    step("4. Checkpoint conversion: Hugging Face -> MindSpore model zoo .ckpt -> bertforge")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = minilm.save_mindspore(Path(tmp) / "minilm.ckpt")
        print(
            "(a .ckpt carries no config, so we pass MiniLM's; bertforge warns that it differs from the model "
            "zoo's LayerNorm eps and GELU — expected here)"
        )
        back = BertModel.from_pretrained(ckpt, config=minilm.config).eval()
        with torch.no_grad():
            diff = (back(**batch).last_hidden_state - out.last_hidden_state).abs().max().item()
        print(f"wrote {ckpt.name} ({ckpt.stat().st_size / 1e6:.1f} MB), read it back: max |diff| = {diff:.1e}")
        if diff != 0.0:
            raise SystemExit("quickstart: the MindSpore round trip changed the outputs")
    step("5. Pretraining data: Wikipedia dump -> sentences -> MLM/NSP instances")
    work = Path(".cache/quickstart")
    wiki = extract_wiki(fetch("enwiki-dump"), work / "wiki", overwrite=True, progress=False)
    print(wiki.summary())
    options = CreateOptions(dupe_factor=2, dynamic_masking=False)
    report = create_pretraining_data(
        wiki.shards, fetch("vocab-en"), work / "data", options, workers=2, overwrite=True, progress=False
    )
    print(report.summary())
    dataset = PretrainingDataset(work / "data")
    print("first instance ([MASK]→original, | between segments A and B):")
    print("  " + format_record(dataset[0], en.convert_ids_to_tokens))
    stats = dataset_statistics(dataset)
    print(
        f"statistics: {stats['mean_tokens']:.1f} tokens/instance, {stats['masked_per_instance']:.1f} masked, "
        f"NSP random {stats['nsp_random_fraction']:.0%}, mask/keep/random "
        f"{stats['mask_split']['mask']:.0%}/{stats['mask_split']['kept']:.0%}/{stats['mask_split']['random']:.0%}"
    )
    print(f"(the same with the CLI: bertforge inspect {work / 'data'})")

    step("6. Pretraining a tiny BERT on it (configs/pretrain/tiny.yaml)")
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)  # the quickstart's own scratch run
    config = load_config(ROOT / "configs" / "pretrain" / "tiny.yaml", [f"data.path={work / 'data'}"])
    final = pretrain(config, run)
    first = read_metrics(run)[0]
    after = evaluate(final, work / "data", limit=2000, progress=False)
    print(
        f"MLM loss {first['mlm_loss']:.2f} over the first {first['step']} steps -> {after['mlm_loss']:.2f} at the "
        f"end (MLM accuracy {first['mlm_accuracy']:.1%} -> {after['mlm_accuracy']:.1%}, NSP accuracy "
        f"{after['nsp_accuracy']:.1%}; a few hundred steps of a tiny model learn frequent words, no more)"
    )
    if not after["mlm_loss"] < first["mlm_loss"]:
        raise SystemExit("quickstart: pretraining did not lower the MLM loss")
    for png in plot_run(run):
        print(f"plot: {png}")
    print(
        f"(the same with the CLI: bertforge pretrain --config configs/pretrain/tiny.yaml --data {work / 'data'} "
        f"--output RUN_DIR; bertforge pretrain-eval --model {final} --data {work / 'data'}; bertforge plot RUN_DIR)"
    )

    step("7. Fine-tuning it on real sentence polarity (Pang & Lee), evaluating, predicting")
    task = work / "polarity"
    task.mkdir(exist_ok=True)
    with open(fetch("polarity-en"), encoding="utf-8-sig", newline="") as f:
        rows = [(text.strip(), "positive" if label == "1" else "negative") for label, text in csv.reader(f)]
    random.Random(0).shuffle(rows)
    new = ["a wonderful , moving film with a superb cast .", "a dull , lifeless mess that wastes everyone 's time ."]
    for name, part, header in (
        ("train.csv", rows[:3000], ("text", "label")),
        ("dev.csv", rows[3000:], ("text", "label")),
        ("new.csv", [(t,) for t in new], ("text",)),
    ):
        with open(task / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *part])
    shutil.rmtree(task / "out", ignore_errors=True)
    config = load_config(
        ROOT / "configs" / "finetune" / "classification.yaml",
        [
            f"init={final}",
            f"task.vocab={fetch('vocab-en')}",
            f"task.train={task / 'train.csv'}",
            f"task.dev={task / 'dev.csv'}",
            f"task.test={task / 'new.csv'}",
            "task.max_seq_length=64",
            "train.epochs=2",
            "optimizer.learning_rate=1e-3",
            "do_predict=true",
            "train.device=cpu",
        ],
        config_class("classification"),
    )
    results = finetune(config, task / "out")
    print(
        f"dev accuracy {results['accuracy']:.1%} on {len(rows) - 3000} held-out sentences (a tiny model pretrained "
        "for 300 steps learns little; real pretrained weights do far better: step 8)"
    )
    for line, text in zip((task / "out" / "predictions.jsonl").read_text().splitlines(), new):
        p = json.loads(line)
        print(f"  {p['label']:8s} {max(p['probabilities'].values()):.0%}  {text}")
    print(
        f"(the same with the CLI: bertforge finetune classification --train {task / 'train.csv'} --dev "
        f"{task / 'dev.csv'} --test {task / 'new.csv'} --init {final} --task.vocab VOCAB --output DIR --do-predict)"
    )

    step("8. Fine-tuning the real MiniLM weights on it, then `bertforge predict` on new sentences")
    shutil.rmtree(task / "minilm", ignore_errors=True)
    config = load_config(
        ROOT / "configs" / "finetune" / "classification.yaml",
        [
            f"init={fetch('minilm')}",
            f"task.train={task / 'train.csv'}",
            f"task.dev={task / 'dev.csv'}",
            "train.epochs=1",
            "optimizer.learning_rate=5e-5",
            "train.device=cpu",
        ],
        config_class("classification"),
    )
    results = finetune(config, task / "minilm")
    best = task / "minilm" / "best"
    print(f"dev accuracy {results['accuracy']:.1%} on {len(rows) - 3000} held-out sentences (one epoch, real weights)")
    print(f"model folder {best}: {', '.join(sorted(p.name for p in best.iterdir()))}")
    new = [
        "a wonderful , moving film with a superb cast .",
        "a dull , lifeless mess that wastes everyone 's time .",
        "the jokes never land and the plot goes nowhere .",
        "an honest , funny and heartfelt little movie .",
    ]
    for line in bertforge("predict", "--model", best, *new):
        p = json.loads(line)
        print(f"  {p['label']:8s} {p['score']:.0%}  {p['text']}")
    if results["accuracy"] < 0.7:
        raise SystemExit("quickstart: the fine-tuned MiniLM should reach well over 70% dev accuracy")

    step("9. Question answering: MiniLM on real SQuAD questions, then `bertforge predict` on a held-out passage")
    squad = work / "squad"
    squad.mkdir(exist_ok=True)
    with zipfile.ZipFile(fetch("xglue-mlqa-dummy")) as zf:  # the first two articles of SQuAD v1.1's train set
        document = json.loads(zf.read(SQUAD_V1))
    parts = dict(zip(("train.json", "dev.json"), split_paragraphs(document, 0.8, seed=0)))
    for name, part in parts.items():
        (squad / name).write_text(json.dumps(part), encoding="utf-8")
    count = {name: sum(len(p["qas"]) for a in part["data"] for p in a["paragraphs"]) for name, part in parts.items()}
    shutil.rmtree(squad / "out", ignore_errors=True)
    config = load_config(
        None,
        [
            f"init={fetch('minilm')}",
            f"task.train={squad / 'train.json'}",
            f"task.dev={squad / 'dev.json'}",
            *QA_RECIPE,
            "train.device=cpu",
        ],
        config_class("qa"),
    )
    results = finetune(config, squad / "out")
    best = squad / "out" / "best"
    print(
        f"dev EM {results['exact']:.1f}, F1 {results['f1']:.1f} on {count['dev.json']} questions about "
        f"{len(parts['dev.json']['data'])} held-out paragraphs, after {count['train.json']} training questions "
        "and a few minutes of CPU: a weak reader (SQuAD's full training set has 88k questions)"
    )
    # Two of the held-out questions, with the answers SQuAD's annotators gave
    questions = squad / "questions.jsonl"
    asked = [("In what year was the College of Arts and Letters at Notre Dame created?", "1842"),
             ("How many BA majors does the College of Arts and Letters at Notre Dame offer?", "33")]  # fmt: skip
    questions.write_text("".join(json.dumps({"question": q, "context": PASSAGE}) + "\n" for q, _ in asked))
    print(f"passage: {PASSAGE}")
    for (question, gold), line in zip(asked, bertforge("predict", "--model", best, "--input", questions)):
        p = json.loads(line)
        print(f"  Q: {question}\n  A: {p['answer']!r} (score {p['score']:.2f}, characters {p['start']}-{p['end']}; "
              f"SQuAD's answer: {gold!r})")  # fmt: skip
        assert PASSAGE[p["start"] : p["end"]] == p["answer"]
    step("10. Named-entity recognition: a tiny Chinese BERT + CRF on real MSRA sentences, then `bertforge predict`")
    msra = work / "msra"
    msra.mkdir(exist_ok=True)
    raw = (fetch("msra-ner") / "msra_train.txt").read_text(encoding="utf-8").replace("\r\n", "\n")
    sentences = [s for s in raw.split("\n\n") if s.strip() and len(s.strip().splitlines()) <= 60]  # short ones
    (msra / "train.txt").write_text("\n\n".join(sentences[:8000]) + "\n", encoding="utf-8")
    (msra / "dev.txt").write_text("\n\n".join(sentences[-500:]) + "\n", encoding="utf-8")
    init = msra / "init"  # no Chinese BERT weights exist offline: a tiny one from random initialisation
    torch.manual_seed(0)
    shape = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512}
    BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=len(zh), **shape)).save_pretrained(
        init, overwrite=True
    )
    shutil.copyfile(fetch("vocab-zh"), init / "vocab.txt")
    shutil.rmtree(msra / "out", ignore_errors=True)
    config = load_config(
        ROOT / "configs" / "finetune" / "ner.yaml",
        [
            f"init={init}",
            f"task.train={msra / 'train.txt'}",
            f"task.dev={msra / 'dev.txt'}",
            "task.crf=true",
            "task.repair_tags=true",
            "train.epochs=4",
            "optimizer.learning_rate=1e-3",
            "train.device=cpu",
        ],
        config_class("ner"),
    )
    results = finetune(config, msra / "out")
    best = msra / "out" / "best"
    print(
        f"dev entity F1 {results['f1']:.1%} (conlleval) on 500 held-out sentences, after 8,000 training sentences and "
        "a tiny model trained from scratch for two minutes: it finds some entities and misses many (the MSRA "
        "benchmark in benchmarks/RESULTS.md pretrains first)"
    )
    for text, line in zip(NER_TEXTS, bertforge("predict", "--model", best, *NER_TEXTS)):
        entities = json.loads(line)["entities"]
        print(f"  {text}")
        for e in entities:
            assert text[e["start"] : e["end"]] == e["word"]
            where = f"characters {e['start']}-{e['end']}, score {e['score']:.2f}"
            print(f"    {e['entity_group']:4s} {e['word']} ({where})")
        if not entities:
            print("    (no entities found)")
    if results["f1"] < 0.1:
        raise SystemExit("quickstart: the NER model should reach a dev entity F1 above 10%")

    step("11. Deployment: step 8's classifier exported to ONNX, verified, predicting with ONNX Runtime, served")
    classifier, exported = task / "minilm" / "best", task / "onnx"
    dev = task / "dev.csv"
    bertforge("export", "--model", classifier, "--output", exported, "--dev", dev, "--overwrite", show=True)
    report = json.loads((exported / "export_report.json").read_text())
    fp32 = report["fp32"]
    print(
        f"ONNX Runtime fusions: {', '.join(f'{k} {v}' for k, v in report['fusions'].items() if v)}; max |Δ| vs PyTorch "
        f"{max(fp32['max_abs_diff'].values()):.1e}; same labels {fp32['agreement']:.0%}; dev accuracy "
        f"{fp32['dev']['onnx']['accuracy']:.2%} (PyTorch {fp32['dev']['torch']['accuracy']:.2%})"
    )
    print("  " + bertforge("predict", "--model", exported, "--backend", "onnx", new[0])[0])
    server = subprocess.Popen(
        [sys.executable, "-m", "bertforge", "serve", "--model", str(exported), "--backend", "onnx", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = server.stdout.readline()  # "bertforge serve: ready at http://127.0.0.1:PORT (...)"
        url = ready.split(" at ", 1)[1].split()[0]
        body = {"inputs": new[1]}
        print(f"$ bertforge serve --model {exported} --backend onnx --port 0\n  {ready.strip()}")
        print(f"$ curl {url}/predict -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}")
        request = urllib.request.Request(
            f"{url}/predict", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            print("  " + response.read().decode())
        print(f"  (the demo page: {url}/ in a browser; API docs at {url}/docs)")
    finally:
        server.terminate()  # SIGTERM: finishes what is in flight, then exits 0
        if server.wait(timeout=60) != 0:
            raise SystemExit(f"quickstart: the server exited with {server.returncode}")

    print(
        "\nquickstart finished: tokenizer, models, real weights, checkpoint conversion, pretraining data, "
        "pretraining, fine-tuning, prediction, question answering, NER, ONNX export and serving all work."
    )


if __name__ == "__main__":
    main()
