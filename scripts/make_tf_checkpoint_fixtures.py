"""Write the TensorFlow checkpoint fixtures in tests/fixtures/tf_checkpoint/ with TensorFlow itself.

TensorFlow is not a bertforge dependency, so run this in a throwaway venv outside the repo:

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras~=2.21.0 numpy  # tf_keras: tf.compat.v1.layers
    /tmp/tfvenv/bin/pip download --no-deps bert-tensorflow==1.0.4 -d /tmp/bertpkg   # Google's modeling.py
    /tmp/tfvenv/bin/pip install --no-deps /tmp/bertpkg/bert_tensorflow-1.0.4-py2.py3-none-any.whl six
    /tmp/tfvenv/bin/python scripts/make_tf_checkpoint_fixtures.py [--bertforge-python .venv/bin/python]

What it does, and why:
1. builds tiny models with Google's own `modeling.py` (bert-tensorflow 1.0.4 under `tf.compat.v1`; its one
   `tf.contrib` use, `layer_norm`, is replaced by contrib's algorithm: moments + batch_normalization,
   epsilon 1e-12, variables `LayerNorm/{beta,gamma}`) and the heads as Google's scripts name them
   (`run_pretraining.py`: `cls/predictions`, `cls/seq_relationship`; `run_classifier.py`:
   `output_weights`/`output_bias`; `run_squad.py`: `cls/squad/…`), gives every variable random values and
   saves it with `tf.compat.v1.train.Saver`; the pretraining one also holds `adam_m`/`adam_v` slots and
   `global_step`; `sharded/` is the same BERT saved as two `.data` shards by the ops Saver(sharded=True)
   runs (SaveV2 per shard, MergeV2Checkpoints);
2. a NEZHA with Google's names minus the absolute position table, Huawei's `bert_config.json` keys
   (`use_relative_position`, `max_relative_position`), and a small forward of our own in TF ops (Huawei's
   relative attention with its fixed sinusoid table, exact-erf GELU);
3. `dtypes/` (every dtype the reader takes, a string, scalars, an empty tensor), `partitioned/` (a variable
   saved in slices) and `other_arch/` (a GPT-2-style checkpoint);
4. stores beside each checkpoint `values.npz`, what `tf.train.load_checkpoint` returns for every tensor
   (bfloat16 as its uint16 bits under `NAME@bfloat16`), and `outputs.npz`, the TF forward pass on fixed ids
   (Google's `modeling.py` computes GELU with the tanh approximation: compare with hidden_act gelu_tanh);
5. checks, exiting non-zero on a failure: every tensor bertforge's reader returns equals TF's bit for bit;
   bertforge's writer reproduces TF's `.index` and `.data` bytes for the same tensors (also for an index of
   several blocks, 20,000 tensors, made and compared in a temporary folder); and, with
   `--bertforge-python` (a Python with bertforge's dependencies), `bertforge convert --to tf` output that
   TF reads back equal to the source and that Google's `get_assignment_map_from_checkpoint` maps whole,
   giving the same forward outputs.
Last run: TensorFlow 2.21.0 (tensorflow-cpu), numpy 2.4.6, Python 3.11.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # Google's modeling.py calls tf.compat.v1.layers.dense, gone in Keras 3

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

# bertforge from the source tree, uninstalled: bertforge.formats imports no torch, which this venv need not have.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from bertforge.formats.tf_checkpoint import TfCheckpoint, write_tf_checkpoint  # noqa: E402

CONFIG = dict(
    attention_probs_dropout_prob=0.1,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    hidden_size=16,
    initializer_range=0.02,
    intermediate_size=32,
    max_position_embeddings=32,
    num_attention_heads=2,
    num_hidden_layers=2,
    type_vocab_size=2,
    vocab_size=64,
)
NEZHA_K = 5  # max_relative_position: small, so the 12-token inputs reach the clipping
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(59)]
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILURES.append(what)


def google_modeling():
    """Google's modeling.py with `tf.contrib.layers.layer_norm` supplied (TF 2 has no contrib)."""

    def layer_norm(inputs, begin_norm_axis=-1, begin_params_axis=-1, scope=None):
        with v1.variable_scope(scope, "LayerNorm"):
            size = inputs.shape[-1:]
            beta = v1.get_variable("beta", size, initializer=v1.zeros_initializer())
            gamma = v1.get_variable("gamma", size, initializer=v1.ones_initializer())
            mean, variance = tf.nn.moments(inputs, [begin_norm_axis], keepdims=True)
            return tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, variance_epsilon=1e-12)

    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers = types.SimpleNamespace(layer_norm=layer_norm)
    sys.modules["tensorflow.contrib"] = contrib
    from bert import modeling

    return modeling


def inputs(seq: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, CONFIG["vocab_size"], (2, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    types_ = (np.arange(seq) >= 5).astype(np.int32)[None].repeat(2, 0)
    return {"input_ids": ids, "input_mask": mask, "token_type_ids": types_}


def google_graph(modeling, head: str, feed: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """Google's BertModel and a head, built in the current graph; returns the output tensors by name."""
    config = modeling.BertConfig.from_dict(CONFIG)
    ph = {k: tf.constant(v) for k, v in feed.items()}
    model = modeling.BertModel(
        config,
        is_training=False,
        input_ids=ph["input_ids"],
        input_mask=ph["input_mask"],
        token_type_ids=ph["token_type_ids"],
        use_one_hot_embeddings=False,
    )
    seq, pooled = model.get_sequence_output(), model.get_pooled_output()
    out = {"sequence_output": seq, "pooled_output": pooled}
    H = CONFIG["hidden_size"]
    if head == "pretraining":  # run_pretraining.py get_masked_lm_output / get_next_sentence_output, all positions
        with v1.variable_scope("cls/predictions"):
            with v1.variable_scope("transform"):
                x = v1.layers.dense(
                    seq,
                    H,
                    activation=modeling.get_activation(CONFIG["hidden_act"]),
                    kernel_initializer=modeling.create_initializer(0.02),
                )
                x = modeling.layer_norm(x)
            bias = v1.get_variable("output_bias", [CONFIG["vocab_size"]], initializer=v1.zeros_initializer())
            out["mlm_logits"] = tf.einsum("bsh,vh->bsv", x, model.get_embedding_table()) + bias
        with v1.variable_scope("cls/seq_relationship"):
            w = v1.get_variable("output_weights", [2, H], initializer=modeling.create_initializer(0.02))
            b = v1.get_variable("output_bias", [2], initializer=v1.zeros_initializer())
            out["nsp_logits"] = tf.matmul(pooled, w, transpose_b=True) + b
    elif head == "classifier":  # run_classifier.py create_model, 3 labels
        w = v1.get_variable("output_weights", [3, H], initializer=v1.truncated_normal_initializer(stddev=0.02))
        b = v1.get_variable("output_bias", [3], initializer=v1.zeros_initializer())
        out["logits"] = tf.matmul(pooled, w, transpose_b=True) + b
    elif head == "squad":  # run_squad.py create_model
        w = v1.get_variable(
            "cls/squad/output_weights", [2, H], initializer=v1.truncated_normal_initializer(stddev=0.02)
        )
        b = v1.get_variable("cls/squad/output_bias", [2], initializer=v1.zeros_initializer())
        logits = tf.einsum("bsh,kh->bsk", seq, w) + b
        out["start_logits"], out["end_logits"] = logits[:, :, 0], logits[:, :, 1]
    return out


def randomize(sess, variables, seed: int) -> None:
    """Values far from the initialiser's, so a swapped gamma/beta or an untransposed square kernel shows."""
    rng = np.random.default_rng(seed)
    for var in variables:
        shape = var.shape.as_list()
        value = rng.normal(0, 0.3, shape) + (1.0 if var.name.endswith("gamma:0") else 0.0)
        var.load(value.astype(var.dtype.as_numpy_dtype), sess)


def write_folder(folder: Path, config: dict) -> None:
    (folder / "bert_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")


def save_values(prefix: Path) -> None:
    """values.npz: what TF's own reader returns for every tensor of the checkpoint."""
    reader = tf.train.load_checkpoint(str(prefix))
    values = {}
    for name, dtype in reader.get_variable_to_dtype_map().items():
        value = np.asarray(reader.get_tensor(name))
        if dtype == tf.bfloat16:
            values[name + "@bfloat16"] = value.view(np.uint16)
        elif dtype == tf.string:  # fixed-width bytes: an object array would need pickle to load
            values[name + "@string"] = value.astype(bytes)
        else:
            values[name] = value
    np.savez_compressed(prefix.parent / "values.npz", **values)


def make_google(out: Path, modeling, head: str, folder: str, slots: bool) -> dict[str, np.ndarray]:
    target = out / folder
    target.mkdir(parents=True)
    feed = inputs()
    graph = tf.Graph()
    with graph.as_default():
        outputs = google_graph(modeling, head, feed)
        weights = v1.global_variables()
        if slots:  # what AdamWeightDecayOptimizer creates, and the step counter
            for var in list(weights):
                base = var.name[: -len(":0")]
                v1.get_variable(base + "/adam_m", var.shape, initializer=v1.zeros_initializer(), trainable=False)
                v1.get_variable(base + "/adam_v", var.shape, initializer=v1.zeros_initializer(), trainable=False)
            v1.train.get_or_create_global_step()
        saver = v1.train.Saver(save_relative_paths=True)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            randomize(sess, v1.global_variables(), seed=len(folder))
            if slots:
                v1.train.get_global_step().load(1000, sess)
            saver.save(sess, str(target / "bert_model.ckpt"), write_meta_graph=False)
            result = sess.run(outputs)
    write_folder(target, CONFIG)
    save_values(target / "bert_model.ckpt")
    np.savez(target / "outputs.npz", **feed, **result)
    return result


def make_sharded(out: Path) -> None:
    """The pretraining BERT's weights (no slots) as two shards, the way Saver(sharded=True) writes them."""
    source = tf.train.load_checkpoint(str(out / "google_bert" / "bert_model.ckpt"))
    names = sorted(n for n in source.get_variable_to_shape_map() if "adam_" not in n and n != "global_step")
    target = out / "sharded"
    target.mkdir()
    parts = []
    for shard, chunk in enumerate((names[0::2], names[1::2])):
        part = tf.raw_ops.ShardedFilename(basename=str(target / "tmp_part"), shard=shard, num_shards=2)
        tf.raw_ops.SaveV2(
            prefix=part,
            tensor_names=chunk,
            shape_and_slices=[""] * len(chunk),
            tensors=[source.get_tensor(n) for n in chunk],
        )
        parts.append(part)
    tf.raw_ops.MergeV2Checkpoints(
        checkpoint_prefixes=tf.stack(parts), destination_prefix=str(target / "bert_model.ckpt")
    )
    write_folder(target, CONFIG)
    save_values(target / "bert_model.ckpt")


def sinusoid_table(k: int, depth: int) -> np.ndarray:
    """Huawei NEZHA's `_generate_relative_positions_embeddings(cache=True)` table, by its loops."""
    table = np.zeros([2 * k + 1, depth])
    for pos in range(2 * k + 1):
        for i in range(depth // 2):
            table[pos, 2 * i] = np.sin(pos / np.power(10000, 2 * i / depth))
            table[pos, 2 * i + 1] = np.cos(pos / np.power(10000, 2 * i / depth))
    return table.astype(np.float32)


def nezha_forward(w: dict[str, np.ndarray], feed: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """NEZHA in TF ops: Google's BERT with no absolute positions and Huawei's relative attention,
    scores = (q.k + q.R[i,j]) / sqrt(d), context = sum_j p (v_j + R[i,j]), R[i,j] = table[clip(j-i,-k,k)+k]."""
    H, heads = CONFIG["hidden_size"], CONFIG["num_attention_heads"]
    d = H // heads

    def dense(x, name, act=None):
        y = tf.matmul(x, w[name + "/kernel"]) + w[name + "/bias"]
        return act(y) if act else y

    def norm(x, name):
        mean, var = tf.nn.moments(x, [-1], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, w[name + "/beta"], w[name + "/gamma"], 1e-12)

    def gelu(x):
        return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))

    ids, types_, mask = (tf.constant(feed[k]) for k in ("input_ids", "token_type_ids", "input_mask"))
    B, S = feed["input_ids"].shape
    x = tf.gather(w["bert/embeddings/word_embeddings"], ids)
    x = norm(x + tf.gather(w["bert/embeddings/token_type_embeddings"], types_), "bert/embeddings/LayerNorm")
    distance = np.arange(S)[None, :] - np.arange(S)[:, None]
    rel = tf.constant(sinusoid_table(NEZHA_K, d)[np.clip(distance, -NEZHA_K, NEZHA_K) + NEZHA_K])  # (S, S, d)
    adder = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -10000.0
    for n in range(CONFIG["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}/"

        def split(t):
            return tf.transpose(tf.reshape(t, [B, S, heads, d]), [0, 2, 1, 3])  # (B, h, S, d)

        q, k, v = (split(dense(x, f"{p}attention/self/{name}")) for name in ("query", "key", "value"))
        scores = tf.matmul(q, k, transpose_b=True) + tf.einsum("bhid,ijd->bhij", q, rel)
        probs = tf.nn.softmax(scores / math.sqrt(d) + adder)
        context = tf.matmul(probs, v) + tf.einsum("bhij,ijd->bhid", probs, rel)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B, S, H])
        x = norm(dense(context, p + "attention/output/dense") + x, p + "attention/output/LayerNorm")
        x = norm(dense(dense(x, p + "intermediate/dense", gelu), p + "output/dense") + x, p + "output/LayerNorm")
    pooled = dense(x[:, 0], "bert/pooler/dense", tf.tanh)
    t = norm(dense(x, "cls/predictions/transform/dense", gelu), "cls/predictions/transform/LayerNorm")
    mlm = tf.einsum("bsh,vh->bsv", t, w["bert/embeddings/word_embeddings"]) + w["cls/predictions/output_bias"]
    nsp = tf.matmul(pooled, w["cls/seq_relationship/output_weights"], transpose_b=True)
    return {
        "sequence_output": x,
        "pooled_output": pooled,
        "mlm_logits": mlm,
        "nsp_logits": nsp + w["cls/seq_relationship/output_bias"],
    }


def make_nezha(out: Path) -> None:
    """Google's names without the absolute position table, saved by Saver; forward by `nezha_forward`."""
    source = tf.train.load_checkpoint(str(out / "google_bert" / "bert_model.ckpt"))
    rng = np.random.default_rng(7)
    weights = {
        n: (rng.normal(0, 0.3, s) + (1.0 if n.endswith("gamma") else 0.0)).astype(np.float32)
        for n, s in source.get_variable_to_shape_map().items()
        if "adam_" not in n and n not in ("global_step", "bert/embeddings/position_embeddings")
    }
    target = out / "nezha"
    target.mkdir()
    feed = inputs()
    graph = tf.Graph()
    with graph.as_default():
        variables = [v1.get_variable(n, initializer=value) for n, value in weights.items()]
        outputs = nezha_forward(weights, feed)
        with v1.Session() as sess:
            sess.run(v1.variables_initializer(variables))
            v1.train.Saver(variables, save_relative_paths=True).save(
                sess, str(target / "bert_model.ckpt"), write_meta_graph=False
            )
            result = sess.run(outputs)
    write_folder(target, CONFIG | {"use_relative_position": True, "max_relative_position": NEZHA_K})
    save_values(target / "bert_model.ckpt")
    np.savez(target / "outputs.npz", **feed, **result)


def save_graph_variables(target: Path, values: dict[str, object], prefix: str = "model.ckpt", **kwargs) -> None:
    target.mkdir()
    graph = tf.Graph()
    with graph.as_default():
        for name, value in values.items():
            v1.get_variable(name, **({"initializer": value} | kwargs.get(name, {})))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(save_relative_paths=True).save(sess, str(target / prefix), write_meta_graph=False)
    save_values(target / prefix)


def make_others(out: Path) -> None:
    rng = np.random.default_rng(3)
    save_graph_variables(
        out / "dtypes",
        {
            "float32": rng.normal(size=(3, 5)).astype(np.float32),
            "float16": rng.normal(size=(4, 2)).astype(np.float16),
            "bfloat16": rng.normal(size=(2, 3, 2)).astype(tf.bfloat16.as_numpy_dtype),
            "float64": rng.normal(size=(3,)),
            "int32": rng.integers(-(2**31), 2**31 - 1, (5,)).astype(np.int32),
            "int64": np.array([[-(2**62), 7], [0, 2**62]], np.int64),
            "int8": np.array([-128, 0, 127], np.int8),
            "uint8": np.array([0, 255], np.uint8),
            "int16": np.array([-32768, 32767], np.int16),
            "bool": np.array([True, False, True]),
            "scalar/global_step": np.int64(123),
            "scalar/learning_rate": np.float32(1e-4),
            "empty": np.zeros((0, 4), np.float32),
            "string": np.array([b"bert", b"", "\u4e2d\u6587".encode()], dtype=object),
        },
    )
    table = rng.normal(size=(6, 4)).astype(np.float32)
    sliced = {
        "shape": table.shape,
        "initializer": v1.random_normal_initializer(seed=1),
        "partitioner": v1.fixed_size_partitioner(2),
    }
    save_graph_variables(
        out / "partitioned",
        {"bert/embeddings/word_embeddings": table, "global_step": np.int64(5)},
        **{"bert/embeddings/word_embeddings": sliced},
    )
    save_graph_variables(
        out / "other_arch",
        {  # GPT-2's TF names
            "model/wte": rng.normal(size=(10, 4)).astype(np.float32),
            "model/wpe": rng.normal(size=(8, 4)).astype(np.float32),
            "model/h0/attn/c_attn/w": rng.normal(size=(1, 4, 12)).astype(np.float32),
        },
    )


def check_reader(out: Path) -> None:
    """Every tensor bertforge reads equals TF's value bit for bit; the writer reproduces TF's bytes."""
    for index in sorted(out.glob("*/*.index")):
        prefix = index.with_suffix("")
        expected = dict(np.load(index.parent / "values.npz"))
        ours = TfCheckpoint(prefix)
        if index.parent.name == "partitioned":
            check(set(ours) == {"bert/embeddings/word_embeddings", "global_step"}, f"{prefix}: names")
            continue
        same = set(ours) == {k.split("@")[0] for k in expected}
        for key, value in expected.items():
            name = key.split("@")[0]
            got = ours[name]
            if key.endswith("@string"):
                same &= got.shape == value.shape and list(got.ravel()) == list(value.ravel())
            elif key.endswith("@bfloat16"):
                bits = got.view(np.uint32)
                same &= bool(np.array_equal(bits >> 16, value) and not (bits & 0xFFFF).any())
            else:
                same &= got.dtype == value.dtype and got.shape == value.shape and got.tobytes() == value.tobytes()
        check(same, f"{prefix}: {len(expected)} tensors read by bertforge equal TF's load_checkpoint bit for bit")
        if "string" in ours:
            continue  # the writer does not write strings
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "copy.ckpt"
            write_tf_checkpoint(copy, {n: restore_dtype(ours, n) for n in ours})
            if ours.num_shards == 1:
                identical = all(
                    Path(f"{copy}{s}").read_bytes() == Path(f"{prefix}{s}").read_bytes()
                    for s in (".index", ".data-00000-of-00001")
                )
                check(identical, f"{prefix}: bertforge's writer gives TF's .index and .data bytes")
            reread = tf.train.load_checkpoint(str(copy))
            equal = all(
                np.asarray(reread.get_tensor(n)).tobytes() == np.asarray(restore_dtype(ours, n)).tobytes() for n in ours
            )
            check(equal and set(reread.get_variable_to_shape_map()) == set(ours), f"{prefix}: written copy read by TF")


def check_large_index() -> None:
    """An index of several 256 KiB blocks (not kept: 20,000 tensors), where TF shortens the keys between blocks
    and restarts every index entry: bertforge's writer must still give TF's bytes."""
    names = [f"bert/encoder/layer_{i // 100}/feature_{i % 100:03d}/kernel_with_a_long_name" for i in range(20000)]
    values = [np.full((i % 3,), i, np.float32) for i in range(len(names))]
    with tempfile.TemporaryDirectory() as tmp:
        tf.raw_ops.SaveV2(prefix=f"{tmp}/tf", tensor_names=names, shape_and_slices=[""] * len(names), tensors=values)
        write_tf_checkpoint(Path(tmp) / "ours", dict(zip(names, values)))
        size = Path(f"{tmp}/tf.index").stat().st_size
        same = all(
            Path(f"{tmp}/tf{s}").read_bytes() == Path(f"{tmp}/ours{s}").read_bytes()
            for s in (".index", ".data-00000-of-00001")
        )
        check(same and size > 3 * 262144, f"a {size}-byte index of {len(names)} tensors: bertforge writes TF's bytes")


def restore_dtype(ckpt: TfCheckpoint, name: str) -> np.ndarray:
    """The reader widens bfloat16 to float32; give the writer TF's own bfloat16 back."""
    value = ckpt[name]
    return value.astype(tf.bfloat16.as_numpy_dtype) if ckpt.entries[name].dtype_name == "bfloat16" else value


def convert_to_tf(python: str, source: Path, output: Path, *extra: str) -> Path:
    subprocess.run(
        [python, "-m", "bertforge", "convert", str(source), str(output), "--to", "tf", *extra],
        check=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    return output / "bert_model.ckpt"


def check_converted(out: Path, modeling, python: str) -> None:
    """`bertforge convert --to tf` output: read by TF equal to the source weights, and loaded whole by
    Google's get_assignment_map_from_checkpoint into the graph that made the source, same outputs."""
    for folder, head in (
        ("google_bert", "pretraining"),
        ("google_classifier", "classifier"),
        ("google_squad", "squad"),
        ("nezha", None),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            converted = convert_to_tf(python, out / folder, Path(tmp) / "tf")
            source = tf.train.load_checkpoint(str(out / folder / "bert_model.ckpt"))
            written = tf.train.load_checkpoint(str(converted))
            names = set(written.get_variable_to_shape_map())
            wanted = {n for n in source.get_variable_to_shape_map() if "adam_" not in n and n != "global_step"}
            if head == "squad":
                wanted -= {"bert/pooler/dense/kernel", "bert/pooler/dense/bias"}  # run_squad never uses the pooler
            equal = names == wanted and all(np.array_equal(written.get_tensor(n), source.get_tensor(n)) for n in names)
            check(equal, f"convert --to tf {folder}: TF reads {len(names)} tensors equal to the source")
            if head is None:
                continue
            graph = tf.Graph()
            with graph.as_default():
                outputs = google_graph(modeling, head, inputs())
                tvars = v1.trainable_variables()
                assignment, initialized = modeling.get_assignment_map_from_checkpoint(tvars, str(converted))
                v1.train.init_from_checkpoint(str(converted), assignment)
                with v1.Session() as sess:
                    sess.run(v1.global_variables_initializer())
                    result = sess.run(outputs)
            expected = dict(np.load(out / folder / "outputs.npz"))
            missing = [v.name for v in tvars if v.name not in initialized]
            if head == "squad":
                missing = [m for m in missing if not m.startswith("bert/pooler/")]
                del result["pooled_output"]
            same = all(np.array_equal(result[k], expected[k]) for k in result)
            check(
                not missing and same,
                f"convert --to tf {folder}: Google's assignment map covers every variable "
                f"(unmapped: {missing}) and the outputs are unchanged",
            )
    zoo = ROOT / "tests" / "fixtures" / "mindspore"
    with tempfile.TemporaryDirectory() as tmp:
        converted = convert_to_tf(
            python, zoo / "bert_tiny.ckpt", Path(tmp) / "tf", "--config", str(zoo / "pretrain_config.yaml")
        )
        reader = tf.train.load_checkpoint(str(converted))
        names = reader.get_variable_to_shape_map()
        readable = all(reader.get_tensor(n).shape == tuple(s) for n, s in names.items())
        check(
            readable and len(names) == 46,
            f"convert --to tf of MindSpore's bert_tiny.ckpt: TF reads {len(names)} tensors",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "tf_checkpoint")
    parser.add_argument("--bertforge-python", help="a Python with bertforge's dependencies, for the --to tf checks")
    args = parser.parse_args()
    modeling = google_modeling()
    if args.out.exists():
        shutil.rmtree(args.out)
    make_google(args.out, modeling, "pretraining", "google_bert", slots=True)
    make_google(args.out, modeling, "classifier", "google_classifier", slots=False)
    make_google(args.out, modeling, "squad", "google_squad", slots=False)
    make_sharded(args.out)
    make_nezha(args.out)
    make_others(args.out)
    check_reader(args.out)
    check_large_index()
    if args.bertforge_python:
        check_converted(args.out, modeling, args.bertforge_python)
    print(f"TensorFlow {tf.__version__}, numpy {np.__version__}: {len(FAILURES)} failure(s)")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
