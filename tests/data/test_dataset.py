"""PretrainingDataset on Google's TFRecords (written by TensorFlow) and on their conversion to our shards."""

import re
from pathlib import Path

import numpy as np
import pytest

from bertforge.cli import main as cli
from bertforge.data.dataset import FEATURES, PretrainingDataset
from bertforge.errors import BertforgeError

TFRECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "tfrecord"


def test_reads_google_tfrecords_as_tensorflow_does():
    expected = np.load(TFRECORDS / "google_en.npz")
    for name in ("google_en.tfrecord", "google_en.tfrecord.gz"):
        dataset = PretrainingDataset(TFRECORDS / name)
        assert len(dataset) == len(expected["input_ids"]) == 303
        for i in (0, 1, 150, 302):
            item = dataset[i]
            assert set(item) == set(FEATURES)
            for key in FEATURES:
                assert np.array_equal(item[key], expected[key][i].reshape(item[key].shape)), (name, key, i)


def test_convert_data_keeps_every_record(tmp_path, sample, capsys):
    assert (
        cli(
            [
                "convert-data",
                "--input",
                str(TFRECORDS / "google_en.tfrecord"),
                "--output",
                str(tmp_path / "ds"),
                "--vocab",
                str(sample("vocab-en")),
            ]
        )
        == 0
    )
    assert "303 instances" in capsys.readouterr().out
    source, converted = PretrainingDataset(TFRECORDS / "google_en.tfrecord"), PretrainingDataset(tmp_path / "ds")
    assert len(converted) == len(source)
    for i in range(len(source)):
        a, b = source[i], converted[i]
        for key in FEATURES:
            assert np.array_equal(a[key], b[key]), (key, i)
    converted.check_vocab(30522, sample("vocab-en"))
    with pytest.raises(BertforgeError, match="different vocab"):
        converted.check_vocab(30522, sample("vocab-zh"))
    # shards are far smaller than the TFRecord: ragged uint16 ids instead of padded int64 protobufs
    size = sum(p.stat().st_size for p in (tmp_path / "ds").rglob("*.npy"))
    assert size < (TFRECORDS / "google_en.tfrecord").stat().st_size / 2
    assert cli(["inspect", str(tmp_path / "ds"), "--limit", "1"]) == 0
    assert "[CLS]" in capsys.readouterr().out


def test_convert_data_rejects_a_smaller_vocab(tmp_path, sample):
    assert (
        cli(
            [
                "convert-data",
                "--input",
                str(TFRECORDS / "google_en.tfrecord"),
                "--output",
                str(tmp_path / "ds"),
                "--vocab",
                str(sample("vocab-zh")),
            ]
        )
        == 2
    )


def test_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("These are my notes, plain text and not records.\n")
    with pytest.raises(BertforgeError, match="not a TFRecord"):
        PretrainingDataset(tmp_path / "notes.txt")
    with pytest.raises(BertforgeError, match="no schema.json"):
        PretrainingDataset(tmp_path)
    with pytest.raises(BertforgeError, match="neither a bertforge dataset"):
        PretrainingDataset(tmp_path / "missing")


def create_small(sample, root: Path, dynamic: bool) -> Path:
    from bertforge.data.create import CreateOptions, create_pretraining_data

    text = "\n\n".join("\n".join(f"Sentence {s} of document {d} is here." for s in range(5)) for d in range(12))
    (root / "text.txt").write_text(text + "\n")
    options = CreateOptions(dupe_factor=1, dynamic_masking=dynamic)
    create_pretraining_data([root / "text.txt"], sample("vocab-en"), root / "data", options, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def small_dataset(sample, tmp_path_factory):
    return create_small(sample, tmp_path_factory.mktemp("small"), dynamic=False)


def test_dynamic_masks_follow_the_dataset_seed(sample, tmp_path):
    """Masks drawn at read time depend on (seed, epoch, index): the same seed gives the same masks, another
    seed other masks (on most instances: a short one may draw the same positions by chance)."""
    data = create_small(sample, tmp_path, dynamic=True)

    def masks(seed: int) -> list[tuple]:
        dataset = PretrainingDataset(data, seed=seed)
        return [tuple(dataset[i]["masked_lm_positions"]) + tuple(dataset[i]["input_ids"]) for i in range(len(dataset))]

    first = masks(1)
    assert len(first) >= 10 and masks(1) == first
    assert sum(a != b for a, b in zip(first, masks(2))) > len(first) // 2


def test_dynamic_masks_are_drawn_apart_for_each_instance_and_epoch(sample, tmp_path):
    """Instances of one epoch get independent masks: among instances of the same length (this corpus has many),
    the masked positions differ for most pairs, as they would if each drew its own; and set_epoch redraws them.
    One stream shared by every instance of an epoch would mask the same positions in all of them."""
    data = create_small(sample, tmp_path, dynamic=True)
    dataset = PretrainingDataset(data, seed=1)
    items = [dataset[i] for i in range(len(dataset))]
    by_length: dict[int, list[tuple]] = {}
    for item in items:
        by_length.setdefault(int(item["input_mask"].sum()), []).append(tuple(item["masked_lm_positions"]))
    pairs = [(a, b) for group in by_length.values() for i, a in enumerate(group) for b in group[i + 1 :]]
    assert len(pairs) >= 10, by_length.keys()
    assert sum(a != b for a, b in pairs) > 0.8 * len(pairs)
    dataset.set_epoch(1)
    assert sum(tuple(dataset[i]["masked_lm_positions"]) != tuple(item["masked_lm_positions"])
               for i, item in enumerate(items)) > len(items) // 2  # fmt: skip


def edited(schema: dict, edit: str) -> dict:
    exec(edit, {}, {"s": schema})
    return schema


@pytest.mark.parametrize(
    "edit,expected",
    [
        ("s['instances'] = '12'", r"instances must be an integer >= 0, got '12' \(a string\)"),
        ("del s['masking']", r"masking is missing \(a mapping expected\)"),
        ("s['dynamic_masking'] = 'no'", "dynamic_masking must be true or false"),
        ("s['masking']['mask_id'] = -1", "masking.mask_id must be an integer >= 0, got -1"),
        (
            "s['shards'][0]['name'] = '../../elsewhere'",
            r"shards\[0\].name is '../../elsewhere', expected 'shard-00000'",
        ),
        ("s['instances'] += 1", "instances is .*, but its shards hold"),
        ("s['columns']['lengths']['dtype'] = 'uint8'", "columns .* differ from those its settings imply"),
        ("s['max_predictions_per_seq'] = 300", "columns .* differ from those its settings imply"),
        ("s['max_seq_length'] = 8", "shard-00000: instance 0 has a length above max_seq_length 8"),
        ("s['shards'] = {}", r"shards must be a list, got {} \(a mapping\)"),
    ],
)
def test_an_edited_schema_is_a_one_line_error_naming_it(small_dataset, tmp_path, capsys, edit, expected):
    import json
    import shutil

    shutil.copytree(small_dataset, tmp_path / "data")
    path = tmp_path / "data" / "schema.json"
    path.write_text(json.dumps(edited(json.loads(path.read_text()), edit)))
    with pytest.raises(BertforgeError, match=f"{tmp_path / 'data'}.*{expected}"):
        PretrainingDataset(tmp_path / "data")
    assert cli(["inspect", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_invalid_schema_json_and_damaged_columns_are_errors_naming_the_file(small_dataset, tmp_path):
    import shutil

    shutil.copytree(small_dataset, tmp_path / "data")
    schema = tmp_path / "data" / "schema.json"
    text = schema.read_bytes()
    for damage, expected in ((text[: len(text) // 2], "not valid JSON"), (b"\xff" + text, "not valid JSON")):
        schema.write_bytes(damage)
        with pytest.raises(BertforgeError, match=f"{schema}: {expected}"):
            PretrainingDataset(tmp_path / "data")
    schema.write_bytes(text)
    column = tmp_path / "data" / "shard-00000" / "input_ids.npy"
    original = column.read_bytes()
    for damage in (original[:-10], original[:40], b""):
        column.write_bytes(damage)
        with pytest.raises(BertforgeError, match=f"{column}: not a readable .npy file, truncated or damaged"):
            PretrainingDataset(tmp_path / "data")
    np.save(column, np.frombuffer(original[128:], dtype=np.uint16)[:-3])  # a valid .npy, short by 3 tokens
    with pytest.raises(BertforgeError, match=f"{column}: uint16 .*, but schema.json says uint16"):
        PretrainingDataset(tmp_path / "data")


def test_an_empty_dataset_is_an_error_for_inspect_and_pretrain_eval(tmp_path, tiny_checkpoint, capsys):
    """Earlier versions could leave a complete-looking dataset of 0 instances."""
    from bertforge.data import shards

    meta = {"instances": 0, "tokens": 0, "read": {}}
    shards.prepare_output(tmp_path / "empty", {}, resume=False, overwrite=False)
    shards.write_shard(tmp_path / "empty", 0, {}, meta)
    masking = {"max_predictions_per_seq": 20, "masked_lm_prob": 0.15, "mask_id": 103, "vocab_size": 30522,
               "whole_word_mask": False}  # fmt: skip
    shards.write_schema(tmp_path / "empty", [meta], max_seq_length=128, max_predictions=20, dynamic=False,
                        whole_word=False, masking=masking, vocab={"size": 30522, "sha256": None, "file": None},
                        special_ids={}, parameters={})  # fmt: skip
    for args in (["inspect", str(tmp_path / "empty")], ["pretrain-eval", "--model", str(tiny_checkpoint), "--data",
                 str(tmp_path / "empty"), "--quiet"]):  # fmt: skip
        assert cli(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "empty: the dataset holds no instances" in err, err


def test_tfrecord_token_ids_beyond_the_models_vocab(tmp_path, capsys):
    dataset = PretrainingDataset([TFRECORDS / "google_en_extra.tfrecord", TFRECORDS / "google_en.tfrecord"])
    dataset.check_vocab(30522)
    top = int(np.load(TFRECORDS / "google_en.npz")["input_ids"].max())
    with pytest.raises(BertforgeError, match=f"google_en.tfrecord record \\d+: input_ids holds token id {top}, "):
        dataset.check_vocab(top)
    from bertforge.modeling import BertConfig, BertForPreTraining

    BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=1000)).save_pretrained(tmp_path / "model")
    args = ["pretrain-eval", "--model", str(tmp_path / "model"), "--data", str(TFRECORDS / "google_en.tfrecord")]
    assert cli([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside the model's vocab_size 1000" in err, err


@pytest.mark.parametrize("flag", ["--batch-size", "--limit"])
def test_pretrain_eval_refuses_nothing_to_evaluate(small_dataset, tiny_checkpoint, capsys, flag):
    args = ["pretrain-eval", "--model", str(tiny_checkpoint), "--data", str(small_dataset), "--quiet", flag, "0"]
    assert cli(args) == 2
    assert "must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "column,instance,value",
    [("input_ids", 3, 30522), ("input_ids", 5, 65535), ("masked_lm_ids", 7, 40000), ("masked_lm_positions", 2, None)],
)
def test_an_id_or_position_out_of_range_in_a_shard_is_an_error_naming_it(
    small_dataset, tmp_path, capsys, column, instance, value
):
    """A bad id used to pass opening and stop `pretrain` with an IndexError when its instance was drawn
    (issue 25, item 11): now opening the dataset fails, naming the shard's file and the instance, and
    `pretrain` exits 2 with that line before building a model."""
    import shutil

    shutil.copytree(small_dataset, tmp_path / "data")
    shard = tmp_path / "data" / "shard-00000"
    lengths = np.load(shard / "lengths.npy").astype(np.int64)
    array = np.load(shard / f"{column}.npy").copy()
    if column == "input_ids":
        array[lengths[:instance].sum() + 1] = value  # the instance's first token after [CLS]
        expected = f"{shard / column}.npy: instance {instance} holds token id {value}, outside the vocab of 30522"
    elif column == "masked_lm_ids":
        array[instance, 0] = value
        expected = f"{shard / column}.npy: instance {instance} holds token id {value}, outside the vocab of 30522"
    else:
        array[instance, 0] = lengths[instance]
        expected = f"{shard}: instance {instance} has a masked position beyond its length"
    np.save(shard / f"{column}.npy", array)
    with pytest.raises(BertforgeError, match=re.escape(expected)):
        PretrainingDataset(tmp_path / "data")
    config = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "tiny.yaml"
    args = ["pretrain", "--config", str(config), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run")]
    assert cli([*args, "--train-steps", "6", "--batch-size", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


@pytest.mark.parametrize("edit", ["s['masking']['vocab_size'] = 40000", "s['masking']['mask_id'] = 30522"])
def test_dynamic_masking_ids_beyond_the_vocab_are_an_error(sample, tmp_path, edit):
    """Dynamic masking writes [MASK] and random ids below masking.vocab_size into what it reads."""
    import json

    data = create_small(sample, tmp_path, dynamic=True)
    path = data / "schema.json"
    path.write_text(json.dumps(edited(json.loads(path.read_text()), edit)))
    with pytest.raises(BertforgeError, match=f"{path}: masking.mask_id .* must lie within vocab.size 30522"):
        PretrainingDataset(data)
