"""The NER task: windows cover every word once and merge back, NumPy Viterbi equals the CRF's, constrained
decoding stays valid, gold emissions decode to the gold tags through any number of windows, and a tiny model
fine-tuned on synthetic Chinese sentences predicts entities with character offsets (softmax and CRF)."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.inference import Predictor
from bertforge.model_folder import ModelSettings
from bertforge.modeling import CRF, BertConfig, BertForPreTraining
from bertforge.modeling.crf import viterbi
from bertforge.tasks import ner, tagging
from bertforge.tasks.ner import NerConfig
from bertforge.tasks.ner_readers import NerExample, read_ner
from bertforge.tokenization import FullTokenizer


def test_viterbi_of_one_sequence_equals_the_crf_decoding_it_in_a_batch():
    torch.manual_seed(0)
    for tags, length in ((5, 1), (9, 17), (21, 40)):
        crf = CRF(tags)
        torch.nn.init.normal_(crf.transitions)
        emissions = torch.randn(1, length, tags)
        expected = crf.decode(emissions, torch.ones(1, length, dtype=torch.bool))[0].numpy()
        scores = (p.detach().numpy() for p in (crf.start_transitions, crf.end_transitions, crf.transitions))
        assert np.array_equal(viterbi(emissions.numpy(), np.array([length]), *scores)[0], expected)


def test_constrained_decoding_gives_valid_bioes():
    labels = ["O"] + [f"{p}-{k}" for k in ("LOC", "PER") for p in "BIES"]
    rng = np.random.default_rng(0)
    for _ in range(50):
        em = rng.normal(size=(int(rng.integers(1, 30)), len(labels)))
        tags = [labels[i] for i in viterbi(em[None], np.array([len(em)]), *ner.bioes_constraints(labels))[0]]
        assert tagging.validate(tags, "BIOES") is None, tags


def char_example(text, spans, guid="0"):
    words = [(i, i + 1) for i in range(len(text))]
    tags = tagging.tags_from_spans([(k, s, e) for k, s, e in spans], len(text), "BIO")
    return NerExample(text, words, tags, guid, f"t line {guid}", scheme="BIO")


@pytest.fixture(scope="module")
def zh(sample):
    return FullTokenizer(sample("vocab-zh"))


@pytest.mark.parametrize("max_len", [512, 24, 7])
def test_gold_emissions_decode_to_gold_tags_through_windows(zh, max_len):
    rng = random.Random(max_len)
    long = "".join(rng.choice("我们在北京上海工作学习中国人民银行") for _ in range(1000))
    examples = [
        char_example("江泽民在北京", [("PER", 0, 3), ("LOC", 4, 6)], "0"),
        char_example(long, [("LOC", i, i + 2) for i in range(0, 1000, 50)], "1"),
    ]
    labels = ["O"] + [f"{p}-{k}" for k in ("LOC", "PER") for p in "BIES"]
    settings_ = ModelSettings("ner", labels=labels, task=NerConfig(unit="char", scheme="BIO"))
    features = ner.featurize(examples, zh, settings_, max_len)
    assert max(len(ids) for ids in features.inputs["input_ids"]) <= max_len
    outputs = []
    for ids, gold in zip(features.inputs["input_ids"], features.inputs["labels"]):
        logits = np.zeros((len(ids), len(labels)), dtype=np.float32)
        for pos, label in enumerate(gold):
            if label >= 0:
                logits[pos, label] = 5.0
        outputs.append({"logits": logits})
    results = ner.postprocess(examples, features, outputs, settings_)
    assert len(results[1].tags) == 1000  # one tag per character, however many windows
    for example, result in zip(examples, results):
        assert result.tags_in("BIO") == example.tags
    expected = float(np.exp(5) / (np.exp(5) + len(labels) - 1))  # softmax of the gold row, for each character
    assert results[0].entities == [
        {"entity_group": "PER", "word": "江泽民", "start": 0, "end": 3, "score": pytest.approx(expected)},
        {"entity_group": "LOC", "word": "北京", "start": 4, "end": 6, "score": pytest.approx(expected)},
    ]


NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "欧阳娜娜", "司马光"]
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "乌鲁木齐", "石家庄"]
FILLER = ["今天", "明年", "上个月", "去年", "每天"]


def synthetic(n, seed):
    """Sentences like '张伟今天在北京工作。' with PER and LOC tagged per character in BMES (MSRA's scheme)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        name, place, when = rng.choice(NAMES), rng.choice(PLACES), rng.choice(FILLER)
        parts = [
            (name, "PER"),
            (when, None),
            ("在", None),
            (place, "LOC"),
            (rng.choice(["工作", "学习", "开会"]), None),
        ]
        if rng.random() < 0.5:
            parts = [(when, None), ("，", None)] + parts
        sentence = []
        for text, kind in parts:
            if kind is None:
                sentence += [(c, "O") for c in text]
            else:
                sentence += [(c, ("B-" if i == 0 else "E-" if i == len(text) - 1 else "M-") + kind)
                             for i, c in enumerate(text)]  # fmt: skip
        rows.append(sentence + [("。", "O")])
    return rows


def write_columns(path, rows):
    path.write_text("".join("".join(f"{c} {t}\n" for c, t in r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def zh_checkpoint(sample, tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("zh-init")
    config = BertConfig.from_preset("tiny", vocab_size=21128, hidden_size=64, num_attention_heads=2,
                                    intermediate_size=128)  # fmt: skip
    BertForPreTraining(config).save_pretrained(root)
    shutil.copyfile(sample("vocab-zh"), root / "vocab.txt")
    return root


def transformers_entity_scores(folder, text: str, entities: list[dict]) -> list[float]:
    """Each entity's score recomputed with transformers' BertForTokenClassification on the same folder (its
    logits are the CRF's emissions too): the mean softmax probability of the entity's tags (S-X alone, else B-X,
    I-X/M-X…, E-X), one character per token."""
    import transformers

    model = transformers.BertForTokenClassification.from_pretrained(folder).eval()
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
    ids = tokenizer(list(text), is_split_into_words=True, return_tensors="pt")
    assert ids["input_ids"].shape[1] == len(text) + 2  # [CLS], one token per character, [SEP]
    with torch.no_grad():
        probs = torch.softmax(model(**ids).logits[0, 1:-1].double(), -1)  # (characters, labels)
    label2id = {label: int(i) for label, i in model.config.label2id.items()}
    inside = "M" if any(label.startswith("M-") for label in label2id) else "I"
    scores = []
    for e in entities:
        n, kind = e["end"] - e["start"], e["entity_group"]
        tags = [f"S-{kind}"] if n == 1 else [f"B-{kind}", *[f"{inside}-{kind}"] * (n - 2), f"E-{kind}"]
        scores.append(float(np.mean([probs[e["start"] + i, label2id[t]] for i, t in enumerate(tags)])))
    return scores


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_fine_tuned_ner_predicts_entities_with_offsets(zh_checkpoint, tmp_path, head):
    train = write_columns(tmp_path / "train.txt", synthetic(300, 1))
    dev = write_columns(tmp_path / "dev.txt", synthetic(60, 2))
    out = tmp_path / "out"
    args = ["finetune", "ner", "--quiet", "--device", "cpu", "--train", str(train), "--dev", str(dev), "--test",
            str(dev), "--init", str(zh_checkpoint), "--output", str(out), "--epochs", "4", "--batch-size", "16",
            "--learning-rate", "3e-3", "--max-seq-length", "32", "--do-predict"]  # fmt: skip
    if head == "crf":
        args += ["--task.crf", "true"]
    assert cli(args) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["f1"] > 0.9, results
    saved = json.loads((out / "best" / "bertforge.json").read_text())
    assert saved["kind"] == "ner" and saved["task"]["scheme"] == "BMES" and saved["task"]["unit"] == "char"
    assert ("crf_transitions" in saved["task"]) == (head == "crf")
    conll = (out / "predictions.conll").read_text(encoding="utf-8").split("\n\n")[0].splitlines()
    assert len(conll[0].split()) == 3  # token, gold, predicted (conlleval's input)

    predictor = Predictor.from_pretrained(out / "best")
    text = "去年，王芳今天在深圳学习。"
    entities = predictor.predict(text)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in entities] == [
        ("PER", "王芳", 3, 5), ("LOC", "深圳", 8, 10)
    ]  # fmt: skip
    assert all(text[e["start"] : e["end"]] == e["word"] for e in entities)
    assert [e["score"] for e in entities] == pytest.approx(transformers_entity_scores(out / "best", text, entities))
    long = "王芳在深圳学习。" * 200  # 1,600 characters: windows, one tag per character
    assert len(predictor.predict(long)) == 400
    # predict through the CLI gives the same entities as finetune's own predictions of the dev file
    evaluated = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    dev_texts = [e.text for e in read_ner(dev)[0]]
    predicted = [predictor.predict(t) for t in dev_texts]
    for mine, theirs in zip(predicted, [x["entities"] for x in evaluated], strict=True):
        assert [{**e, "score": 0} for e in mine] == [{**e, "score": 0} for e in theirs]
        assert [e["score"] for e in mine] == pytest.approx([e["score"] for e in theirs], abs=1e-6)


def test_invalid_tags_and_unknown_types_name_file_and_line(zh, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("我 O\n在 O\n\n北 I-LOC\n京 I-LOC\n\n上 B-LOC\n海 I-LOC\n", encoding="utf-8")
    config = ner.NerConfig(scheme="BIO")
    with pytest.raises(BertforgeError, match=r"bad\.txt line 4: I-LOC without B-LOC at token 0 \(BIO\)"):
        ner.read(str(bad), config)
    repaired = ner.read(str(bad), ner.NerConfig(scheme="BIO", repair_tags=True))
    assert repaired[1].tags == ["B-LOC", "I-LOC"]  # conlleval's reading, written validly
    labels = ["O"] + [f"{p}-PER" for p in "BIES"]
    model = ModelSettings("ner", labels=labels, task=NerConfig(unit="char"))
    with pytest.raises(BertforgeError, match=r"bad\.txt line 4: entity type 'LOC' is not one of the model's types"):
        ner.featurize(repaired, zh, model, 32)


def test_a_labels_file_keeps_the_training_data_word_unit_and_scheme(tmp_path):
    fixtures = Path(__file__).parent.parent / "fixtures" / "ner"
    (tmp_path / "types.txt").write_text("PER\nORG\nMISC\n")
    config = ner.NerConfig(labels=str(tmp_path / "types.txt"))
    settings_ = ner.prepare(config, ner.read(str(fixtures / "conll.txt"), config), None)
    assert settings_.task.unit == "word" and settings_.task.scheme == "BIO"
    assert settings_.labels[:5] == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]


def test_label_all_trains_every_piece_of_a_word_with_its_continuing_tag(sample):
    en = FullTokenizer(sample("vocab-en"))
    text = "Zwischenzug visited Ouagadougou"
    words = [(0, 11), (12, 19), (20, 31)]
    example = NerExample(text, words, ["B-PER", "O", "B-LOC"], "0", "t line 1", scheme="BIO")
    labels = ["O"] + [f"{p}-{k}" for k in ("LOC", "PER") for p in "BIES"]
    ids = {label: i for i, label in enumerate(labels)}
    pieces = [len(p) for p in en.ids_batch([text[s:e] for s, e in words])]
    assert pieces[0] > 1 and pieces[2] > 1  # the names are split into several pieces
    for label_all in (False, True):
        settings_ = ModelSettings("ner", labels=labels, task=NerConfig(unit="word", scheme="BIO", label_all=label_all))
        (row,) = ner.featurize([example], en, settings_, 64).inputs["labels"]
        rest = [ids["E-PER"] if label_all else -100, ids["E-LOC"] if label_all else -100]
        expected = [-100, ids["S-PER"], *[rest[0]] * (pieces[0] - 1), ids["O"], ids["S-LOC"]]
        assert row == [*expected, *[rest[1]] * (pieces[2] - 1), -100]


def test_ner_settings_reach_training_and_prediction_from_the_command_line(zh_checkpoint, tmp_path, monkeypatch,
                                                                          caplog, capsys):  # fmt: skip
    """finetune's --task.crf_lr_multiplier gives the CRF's parameters their own learning rate (the optimizer's
    groups, as logged), --task.pad_to_max_length pads every training batch to --max-seq-length, --task.truncate
    and --task.constrained are kept in the model folder; predict's --task.truncate overrides the kept one (a
    sentence longer than the model is cut, and said so, or split into windows)."""
    from bertforge.training import finetune

    widths = []

    def recording(items, pad_to=None):
        batch = collate(items, pad_to)
        widths.append(batch["input_ids"].shape[1])
        return batch

    collate = finetune.collate
    monkeypatch.setattr(finetune, "collate", recording)
    train = write_columns(tmp_path / "train.txt", synthetic(40, 1))
    out = tmp_path / "out"
    args = ["finetune", "ner", "--quiet", "--device", "cpu", "--train", str(train), "--init", str(zh_checkpoint),
            "--output", str(out), "--epochs", "1", "--batch-size", "8", "--max-seq-length", "24", "--task.crf", "true",
            "--task.crf_lr_multiplier", "50", "--task.pad_to_max_length", "true", "--task.truncate", "true",
            "--task.constrained", "true"]  # fmt: skip
    with caplog.at_level("INFO", logger="bertforge"):
        assert cli(args) == 0
    assert widths and set(widths) == {24}, widths  # (the sentences are 10-12 characters: dynamic padding is less)
    groups = [line for line in caplog.text.splitlines() if "lr ×50" in line]
    assert groups and sum(int(line.split(": ")[-1].split(" tensors")[0]) for line in groups) == 3, caplog.text
    saved = json.loads((out / "best" / "bertforge.json").read_text())["task"]
    assert saved["truncate"] is True and saved["constrained"] is True
    capsys.readouterr()
    long = "王芳在深圳学习。" * 10  # 80 characters: 3+ windows of 22
    predict = ["predict", "--model", str(out / "best"), "--quiet", long]
    with caplog.at_level("WARNING", logger="bertforge"):
        caplog.clear()
        assert cli(predict) == 0
        assert "1 of 1 inputs truncated to 24 tokens" in caplog.text
        caplog.clear()
        assert cli([*predict, "--task.truncate", "false"]) == 0
        assert "truncated" not in caplog.text
    # Evaluation only (no training): the command line's --task.truncate over the model's, as in predict.
    tags = ["B-PER", "E-PER", "O", "B-LOC", "E-LOC", "O", "O", "O"] * 10  # BMES, as the model was trained
    dev = write_columns(tmp_path / "dev.txt", [list(zip(long, tags, strict=True))])
    capsys.readouterr()
    assert cli([*predict, "--task.truncate", "false"]) == 0
    windowed = json.loads(capsys.readouterr().out)["entities"]
    assert cli(predict) == 0
    assert json.loads(capsys.readouterr().out)["entities"] != windowed  # the model tags the sentence's tail
    evaluated = tmp_path / "evaluated"
    assert cli(["finetune", "ner", "--quiet", "--device", "cpu", "--no-do-train", "--init", str(out / "best"), "--dev",
                str(dev), "--do-predict", "--output", str(evaluated), "--max-seq-length", "24",
                "--task.truncate", "false"]) == 0  # fmt: skip
    (row,) = [json.loads(line) for line in (evaluated / "predictions.jsonl").read_text().splitlines()]
    assert row["entities"] == windowed
