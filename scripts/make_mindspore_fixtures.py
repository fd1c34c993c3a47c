"""Write the MindSpore checkpoint fixtures in tests/fixtures/mindspore/ with MindSpore itself.

MindSpore is not a bertforge dependency, so run this in a throwaway venv outside the repo:

    python3 -m venv /tmp/msvenv
    /tmp/msvenv/bin/pip install mindspore "numpy<2"  # MindSpore's numpy bfloat16 needs the numpy it was built with
    /tmp/msvenv/bin/python scripts/make_mindspore_fixtures.py   # from the repo root; --out DIR to write elsewhere

What it does, and why:
1. writes tiny BERT and NEZHA checkpoints holding the MindSpore model zoo's parameter names
   (official/nlp/Bert, `BertNetworkWithLoss` as `bert`) through `mindspore.save_checkpoint`, so the
   fixtures are real MindSpore output, not our idea of it;
2. stores beside each `<name>.npz` with what `mindspore.load_checkpoint` returns for the file, so the
   tests' expected values come from MindSpore's own reader;
3. writes `dtypes_split_crc.ckpt` (every tensor_type, scalars, a string, a tensor split over several
   records, CRC trailer) and two files that are not plain checkpoints (encrypted; safetensors);
4. checks the other direction: files written by `bertforge.formats.mindspore_ckpt` load in MindSpore
   with identical names, dtypes and values. It exits non-zero if any check fails.
Last run: MindSpore 2.10.0, numpy 1.26.4, Python 3.11.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore.train import serialization

# bertforge from the source tree, uninstalled: bertforge.formats imports no torch, which this venv need not have.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from bertforge.formats import mindspore_ckpt  # noqa: E402
from bertforge.formats.mindspore_ckpt import read_mindspore_checkpoint, write_mindspore_checkpoint  # noqa: E402

TINY = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    type_vocab_size=2,
)
MAX_RELATIVE_POSITION = 16  # hard-coded in the model zoo's BertAttention -> 2 * 16 + 1 table rows

PRETRAIN_CONFIG = """\
# Tiny configs in the layout of the MindSpore model zoo's official/nlp/Bert/pretrain_config.yaml:
# `bert_network` picks the *_net_cfg section (bert_tiny.ckpt: base, nezha_tiny.ckpt: nezha), whose fields
# are the model zoo's BertConfig arguments; dtype strings are parsed by its src/model_utils/config.py.
description: 'run_pretrain'
bert_network: 'base'
base_batch_size: 2
base_net_cfg:
{base}
nezha_batch_size: 2
nezha_net_cfg:
{nezha}
"""


def net_cfg_yaml(use_relative_positions: bool) -> str:
    fields = dict(
        seq_length=32,
        **TINY,
        hidden_act='"gelu"',
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        initializer_range=0.02,
        use_relative_positions=use_relative_positions,
        dtype="mstype.float32",
        compute_type="mstype.float16",
    )
    ordered = ["seq_length", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
               "max_position_embeddings", "type_vocab_size", "initializer_range", "use_relative_positions",
               "dtype", "compute_type"]  # fmt: skip
    return "\n".join(f"    {key}: {fields[key]}" for key in ordered)


def model_zoo_shapes(use_relative_positions: bool) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the model zoo's BertNetworkWithLoss, in parameters_and_names order."""
    v, h, i = TINY["vocab_size"], TINY["hidden_size"], TINY["intermediate_size"]
    head_dim = h // TINY["num_attention_heads"]
    shapes: dict[str, tuple[int, ...]] = {
        "bert.bert.bert_embedding_lookup.embedding_table": (v, h),
        "bert.bert.bert_embedding_postprocessor.token_type_embedding.embedding_table": (TINY["type_vocab_size"], h),
        "bert.bert.bert_embedding_postprocessor.full_position_embedding.embedding_table": (
            TINY["max_position_embeddings"],
            h,
        ),
        "bert.bert.bert_embedding_postprocessor.layernorm.gamma": (h,),
        "bert.bert.bert_embedding_postprocessor.layernorm.beta": (h,),
    }
    for n in range(TINY["num_hidden_layers"]):
        layer = f"bert.bert.bert_encoder.layers.{n}"
        for proj in ("query", "key", "value"):
            shapes[f"{layer}.attention.attention.{proj}_layer.weight"] = (h, h)
            shapes[f"{layer}.attention.attention.{proj}_layer.bias"] = (h,)
        if use_relative_positions:
            shapes[f"{layer}.attention.attention._generate_relative_positions_embeddings.embeddings_table"] = (
                2 * MAX_RELATIVE_POSITION + 1,
                head_dim,
            )
        shapes[f"{layer}.attention.output.dense.weight"] = (h, h)
        shapes[f"{layer}.attention.output.dense.bias"] = (h,)
        shapes[f"{layer}.attention.output.layernorm.gamma"] = (h,)
        shapes[f"{layer}.attention.output.layernorm.beta"] = (h,)
        shapes[f"{layer}.intermediate.weight"] = (i, h)
        shapes[f"{layer}.intermediate.bias"] = (i,)
        shapes[f"{layer}.output.dense.weight"] = (h, i)
        shapes[f"{layer}.output.dense.bias"] = (h,)
        shapes[f"{layer}.output.layernorm.gamma"] = (h,)
        shapes[f"{layer}.output.layernorm.beta"] = (h,)
    shapes.update(
        {
            "bert.bert.dense.weight": (h, h),
            "bert.bert.dense.bias": (h,),
            "bert.cls1.dense.weight": (h, h),
            "bert.cls1.dense.bias": (h,),
            "bert.cls1.layernorm.gamma": (h,),
            "bert.cls1.layernorm.beta": (h,),
            "bert.cls1.output_bias": (v,),
            "bert.cls2.dense.weight": (2, h),
            "bert.cls2.dense.bias": (2,),
        }
    )
    return shapes


def pretrain_checkpoint(seed: int, use_relative_positions: bool) -> tuple[list[dict], dict]:
    """(save_obj, append_dict) like the model zoo's run_pretrain.py would save after a few Lamb steps."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, shape in model_zoo_shapes(use_relative_positions).items():
        values = rng.standard_normal(shape) * 0.02
        params[name] = (values + 1.0 if name.endswith(".gamma") else values).astype(np.float32)
    # Training state around the network. Names are MindSpore's: Optimizer.global_step, Lamb's lamb_m/lamb_v
    # clones (here only for the NSP head, to keep the file small; real files have them for every parameter),
    # the model zoo's BertTrainOneStepWithLossScaleCell.loss_scale and DynamicLossScaleUpdateCell's counters.
    params["global_step"] = np.array([3], np.int32)
    for prefix in ("lamb_m", "lamb_v"):
        for name in ("bert.cls2.dense.weight", "bert.cls2.dense.bias"):
            moment = rng.standard_normal(params[name].shape) * 1e-3
            params[f"{prefix}.{name}"] = (np.abs(moment) if prefix == "lamb_v" else moment).astype(np.float32)
    params["loss_scale"] = np.array(65536.0, np.float32)
    params["current_iterator_step"] = np.array(3, np.int32)
    params["last_overflow_iterator_step"] = np.array(0, np.int32)
    # Not in model zoo files (their parameters are float32): one float16 entry so the reader sees a second dtype.
    params["fp16_probe.bert.cls2.dense.weight"] = params["bert.cls2.dense.weight"].astype(np.float16)
    save_obj = [{"name": name, "data": ms.Tensor(value)} for name, value in params.items()]
    # ModelCheckpoint(append_info=["epoch_num", "step_num"]) appends Python ints -> Int64 scalars.
    return save_obj, {"epoch_num": 1, "step_num": 3}


def dtypes_checkpoint() -> tuple[list[dict], dict]:
    """One entry per tensor_type MindSpore writes, scalars, and a tensor big enough to split."""
    rng = np.random.default_rng(7)
    arrays = {
        "split.float32": rng.standard_normal((64, 32)).astype(np.float32),  # 8 KiB -> 8 records of 1 KiB
        "float16": rng.standard_normal((3, 5)).astype(np.float16),
        "float64": rng.standard_normal(4),
        "int8": rng.integers(-128, 128, (6,), dtype=np.int8),
        "uint8": rng.integers(0, 256, (6,), dtype=np.uint8),
        "int16": rng.integers(-(2**15), 2**15, (2, 3), dtype=np.int16),
        "uint16": rng.integers(0, 2**16, (2, 3), dtype=np.uint16),
        "int32": rng.integers(-(2**31), 2**31, (5,), dtype=np.int32),
        "uint32": rng.integers(0, 2**32, (5,), dtype=np.uint32),
        "int64": rng.integers(-(2**62), 2**62, (2, 2), dtype=np.int64),
        "uint64": rng.integers(0, 2**63, (2, 2), dtype=np.uint64),
        "bool": rng.integers(0, 2, (7,)).astype(np.bool_),
        "scalar.float32": np.array(0.125, np.float32),
        "scalar.int32": np.array(-5, np.int32),
        "shape_1.int32": np.array([42], np.int32),
    }
    save_obj = [{"name": name, "data": ms.Tensor(value)} for name, value in arrays.items()]
    bf16 = rng.standard_normal((2, 3)).astype(np.float32)
    save_obj.append({"name": "bfloat16", "data": ms.Tensor(bf16, ms.bfloat16)})
    save_obj.append({"name": "empty.float32", "data": ms.Tensor(np.zeros((0, 3), np.float32))})
    return save_obj, {"epoch_num": 2, "lr": 0.5, "note": "MindSpore string entry"}


def as_numpy(value: object) -> np.ndarray:
    """What MindSpore's loader holds, as the arrays bertforge's reader promises (bfloat16 widened to float32)."""
    if isinstance(value, str):
        return np.array(value)
    array = value.asnumpy()
    return array.astype(np.float32) if value.dtype == ms.bfloat16 else array


def save_and_record(out: Path, name: str, save_obj: list[dict], append_dict: dict, **kwargs) -> dict[str, np.ndarray]:
    path = out / f"{name}.ckpt"
    path.unlink(missing_ok=True)  # MindSpore leaves its files read-only
    ms.save_checkpoint(save_obj, str(path), append_dict=append_dict, **kwargs)
    loaded = {key: as_numpy(value) for key, value in ms.load_checkpoint(str(path)).items()}
    np.savez_compressed(out / f"{name}.npz", **loaded)
    return loaded


def check(condition: bool, message: str, failures: list[str]) -> None:
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        failures.append(message)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/mindspore")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    ms.set_context(device_target="CPU")
    failures: list[str] = []
    print(f"MindSpore {ms.__version__}, numpy {np.__version__}")

    expected = {
        "bert_tiny": save_and_record(out, "bert_tiny", *pretrain_checkpoint(0, use_relative_positions=False)),
        "nezha_tiny": save_and_record(out, "nezha_tiny", *pretrain_checkpoint(1, use_relative_positions=True)),
    }
    (out / "pretrain_config.yaml").write_text(
        PRETRAIN_CONFIG.format(base=net_cfg_yaml(False), nezha=net_cfg_yaml(True))
    )

    # MindSpore splits payloads over SLICE_SIZE KB; shrink it to 1 KB so a tiny tensor is split for real.
    slice_size = serialization.SLICE_SIZE
    serialization.SLICE_SIZE = 1
    try:
        expected["dtypes_split_crc"] = save_and_record(out, "dtypes_split_crc", *dtypes_checkpoint(), crc_check=True)
    finally:
        serialization.SLICE_SIZE = slice_size
    raw = (out / "dtypes_split_crc.ckpt").read_bytes()
    check(raw.count(b"split.float32") == 8, "MindSpore split an 8 KiB tensor into 8 records of one tag", failures)
    check(raw[-17:-10] == b"crc_num", "crc_check=True appends b'crc_num' + 10-byte CRC32", failures)
    check("empty.float32" not in expected["dtypes_split_crc"], "MindSpore drops a zero-size tensor on save", failures)

    tiny = [{"name": "w", "data": ms.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))}]
    with tempfile.TemporaryDirectory() as tmp:
        ms.save_checkpoint(tiny, str(Path(tmp) / "w.safetensors"), format="safetensors")
        shutil.copyfile(Path(tmp) / "w.safetensors", out / "saved_as_safetensors.ckpt")
    (out / "encrypted.ckpt").unlink(missing_ok=True)
    ms.save_checkpoint(tiny, str(out / "encrypted.ckpt"), enc_key=b"0123456789abcdef", enc_mode="AES-GCM")
    for path in out.iterdir():
        path.chmod(0o644)

    # Our reader on MindSpore's files (the tests repeat this without MindSpore).
    for name, arrays in expected.items():
        check(same(read_mindspore_checkpoint(out / f"{name}.ckpt"), arrays), f"bertforge reads {name}.ckpt", failures)

    # Our writer, MindSpore's reader.
    with tempfile.TemporaryDirectory() as tmp:
        for name, arrays in expected.items():
            ours = Path(tmp) / f"ours_{name}.ckpt"
            write_mindspore_checkpoint(ours, arrays)
            loaded = {key: as_numpy(value) for key, value in ms.load_checkpoint(str(ours)).items()}
            check(same(loaded, arrays), f"MindSpore loads bertforge's {ours.name} with identical values", failures)
        ours, theirs = Path(tmp) / "ours_bert_tiny.ckpt", out / "bert_tiny.ckpt"
        identical = ours.read_bytes() == theirs.read_bytes()
        check(identical, "bertforge's bert_tiny.ckpt is byte-identical to MindSpore's", failures)

        # Split records + CRC trailer from our writer, verified by MindSpore's crc_check.
        slice_bytes = mindspore_ckpt._SLICE_BYTES
        mindspore_ckpt._SLICE_BYTES = 1024
        try:
            write_mindspore_checkpoint(ours, expected["dtypes_split_crc"], crc=True)
        finally:
            mindspore_ckpt._SLICE_BYTES = slice_bytes
        loaded = {key: as_numpy(value) for key, value in ms.load_checkpoint(str(ours), crc_check=True).items()}
        message = "MindSpore crc_check-loads bertforge's split + CRC file"
        check(same(loaded, expected["dtypes_split_crc"]), message, failures)

        # dtypes numpy cannot express on its own, and a zero-size tensor (which MindSpore's writer drops).
        bf16 = ms.Tensor(np.array([1.5, -2.25, 3.0e-3], np.float32), ms.bfloat16).asnumpy()
        extra = {"bf16": bf16, "empty": np.zeros((0, 3), np.float32), "text": np.array("héllo")}
        write_mindspore_checkpoint(ours, extra)
        loaded = ms.load_checkpoint(str(ours))
        check(
            loaded["bf16"].dtype == ms.bfloat16 and np.array_equal(loaded["bf16"].asnumpy(), bf16),
            "MindSpore loads bertforge's BFloat16 entry as BFloat16",
            failures,
        )
        check(loaded["empty"].shape == (0, 3), "MindSpore loads bertforge's zero-size tensor", failures)
        check(loaded["text"] == "héllo", "MindSpore loads bertforge's str entry as a str", failures)

    for path in sorted(out.iterdir()):
        print(f"{path.stat().st_size:8d}  {path.name}")
    if failures:
        raise SystemExit(f"{len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
