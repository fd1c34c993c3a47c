"""A fine-tuned model folder -> an ONNX model folder: encoder + head traced by PyTorch's dynamo exporter with
dynamic batch and sequence dimensions, kept as it is (`model.onnx`: standard operators, for any runtime), with
ONNX Runtime's BERT optimizer applied (`model_optimized.onnx`) and optionally int8 weights
(`model_quantized.onnx`) — Optimum's names — and everything prediction needs beside it (config.json, vocab.txt,
bertforge.json with the task settings — CRF transitions, QA threshold: CRF decoding runs in NumPy on the
exported emissions). Verified against the PyTorch model before the folder appears (`bertforge.export.verify`)."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertforge.errors import BertforgeError
from bertforge.export import OPSET
from bertforge.export.verify import REPORT_FILE, read_dev, verify
from bertforge.extras import need
from bertforge.fileio import atomic_dir, check_output_dir, holds_files
from bertforge.inference.backends import (
    INPUT_NAMES,
    ONNX_FILE,
    OPTIMIZED_FILE,
    QUANTIZED_FILE,
    OnnxBackend,
    TorchBackend,
    named_outputs,
)
from bertforge.inference.predictor import with_options
from bertforge.model_folder import (
    SETTINGS_FILE,
    VOCAB_FILE,
    check_vocab,
    find_vocab,
    load_settings,
    tokenizer_files,
)
from bertforge.modeling.attention import BertSelfAttention
from bertforge.modeling.config import BertConfig
from bertforge.tasks import get_task, kinds_by_head
from bertforge.tokenization import FullTokenizer

log = logging.getLogger("bertforge")

QUANTIZATIONS = ("int8",)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from logger `name` ("": the root logger) while inside, and no handler left behind: a
    library calling `logging.warning()` configures the root logger on the way (`basicConfig`), after which
    every bertforge message was printed a second time as "INFO:bertforge:..."."""
    logger, root = logging.getLogger(name), logging.getLogger()
    level, handlers = logger.level, list(root.handlers)
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)


class _Graph(nn.Module):
    """The head with positional inputs and a tuple of named outputs: the form the exporter traces."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids, token_type_ids, attention_mask) -> tuple[torch.Tensor, ...]:
        out = named_outputs(self.model(input_ids, token_type_ids, attention_mask))
        return tuple(out[name].float() for name in self.names)


def masked_bilstm(lstm: nn.LSTM, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The head's packed BiLSTM over each row's real tokens, without `pack_padded_sequence` (which
    torch.export cannot trace with a dynamic length). The forward direction reads rows as they are (padding
    comes after the real tokens); the backward one reads each row rotated right, so it starts at the row's
    last real token. Twice the LSTM work, the same numbers. (B, S, H) -> (B, S, 2h), zeros at padding."""
    S, h = hidden.shape[1], lstm.hidden_size
    steps = torch.arange(S, device=hidden.device)
    pad = S - attention_mask.sum(-1, keepdim=True)  # (B, 1) padding per row
    right = steps - pad  # (B, S): position read at each step of the rotated row (`%` does not export)
    rotated = hidden.gather(1, torch.where(right < 0, right + S, right)[..., None].expand_as(hidden))
    backward = lstm(rotated)[0][..., h:]
    back = steps + pad
    backward = backward.gather(1, torch.where(back >= S, back - S, back)[..., None].expand(-1, -1, h))
    forward = lstm(hidden)[0][..., :h]
    return torch.cat([forward, backward], -1) * attention_mask[..., None].to(hidden.dtype)


def explicit_attention(module: BertSelfAttention, hidden: torch.Tensor, mask: torch.Tensor, relative_table=None):
    """`BertSelfAttention.forward` (absolute positions, eval) as MatMul, Div, Add(mask), Softmax, MatMul: the
    pattern ONNX Runtime's optimizer fuses into one Attention op. SDPA exports as a decomposition (q and k
    each scaled by a constant) that it does not recognise. (B, S, H) -> (B, S, H)."""
    B, S, H = hidden.shape
    q, k, v = (
        proj(hidden).view(B, S, module.num_heads, module.head_dim).transpose(1, 2)  # (B, nh, S, hd)
        for proj in (module.query, module.key, module.value)
    )
    return module._explicit_attention(q, k, v, mask, 0.0).transpose(1, 2).reshape(B, S, H)


def split_mask_unsqueeze(path: Path) -> None:
    """The exporter merges `mask[:, None, None, :]` into one Unsqueeze over axes (1, 2); ONNX Runtime's
    attention fusion looks for two, so the graph gets two."""
    onnx = need("onnx")
    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in graph.initializer if t.name}
    nodes = []
    for node in graph.node:
        if node.op_type == "Unsqueeze" and node.input[0] == "attention_mask" and constants.get(node.input[1]) == [1, 2]:
            for axis in (1, 2):
                graph.initializer.append(onnx.numpy_helper.from_array(np.array([axis]), f"mask_axis_{axis}"))
            nodes += [
                onnx.helper.make_node("Unsqueeze", ["attention_mask", "mask_axis_1"], ["mask_unsqueezed_1"]),
                onnx.helper.make_node("Unsqueeze", ["mask_unsqueezed_1", "mask_axis_2"], [node.output[0]]),
            ]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]  # the (1, 2) axes
    for tensor in unused:
        graph.initializer.remove(tensor)
    onnx.save(model, str(path))


# The size each input axis is traced at: distinct, so that the exporter freezes none of them.
_TRACE_SIZES = {"batch": 2, "sequence": 8}


def export_graph(
    model: nn.Module,
    path: Path,
    opset: int = OPSET,
    fusable_attention: bool = True,
    axes: tuple[str, ...] = ("batch", "sequence"),
) -> list[str]:
    """Trace `model` (eval mode; left unchanged) to an ONNX file with inputs `INPUT_NAMES` int64 of the task's
    `axes` (the last one the sequence), every axis dynamic (traced at batch 2, length 8, other axes 3, one row
    padded, so none is frozen). Attention is traced in the form ONNX Runtime fuses unless `fusable_attention` is
    False (SDPA's). Returns the output names."""
    need("onnxscript")
    config: BertConfig = model.config
    model = copy.deepcopy(model)  # traceable forms swapped in below, on this copy only
    if hasattr(model, "lstm"):
        model._bilstm = functools.partial(masked_bilstm, model.lstm)
    for module in model.modules():
        if fusable_attention and isinstance(module, BertSelfAttention) and not module.relative:
            module.forward = functools.partial(explicit_attention, module)
    generator = torch.Generator().manual_seed(0)
    shape = tuple(_TRACE_SIZES.get(axis, 3) for axis in axes)
    input_ids = torch.randint(5, config.vocab_size, shape, generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[..., 4:] = 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, ..., 5:] = 0
    example = (input_ids, token_type_ids, attention_mask)
    names = list(named_outputs(model(*example)))
    dims = {
        i: torch.export.Dim(axis, max=config.max_position_embeddings) if axis == "sequence" else torch.export.Dim(axis)
        for i, axis in enumerate(axes)
    }
    # The exporter prints its progress and warns about things that do not concern a BERT (torchvision ops).
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                _Graph(model, names).eval(),
                example,
                str(path),
                dynamo=True,
                input_names=list(INPUT_NAMES),
                output_names=names,
                dynamic_shapes=(dims,) * 3,
                opset_version=opset,
                external_data=False,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BertforgeError(f"torch.onnx.export (dynamo) failed for {type(model).__name__}: {first}") from exc
    split_mask_unsqueeze(path)
    return names


def optimize(source: Path, target: Path, config: BertConfig) -> dict[str, int]:
    """ONNX Runtime's BERT optimizer (fused attention, skip-layer-norm, GELU, ...) from `source` into
    `target`; returns the fused operators found, by type (0: the pattern was not recognised)."""
    optimizer = need("onnxruntime.transformers.optimizer")
    options = need("onnxruntime.transformers.fusion_options").FusionOptions("bert")
    options.use_raw_attention_mask(True)  # the default reads each row's mask as a length: padding-at-end only
    with _quiet("onnxruntime"):  # it logs each fusion it tries
        optimized = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            optimization_options=options,
        )
    optimized.save_model_to_file(str(target))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if not k.startswith("QOrdered")}


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization: int8 weights, activations quantized per batch at run time."""
    quantization = need("onnxruntime.quantization")
    with _quiet(""):  # it advises (on the root logger) a pre-processing meant for static quantization
        quantization.quantize_dynamic(str(source), str(target), weight_type=quantization.QuantType.QInt8)


def export_folder(
    model_dir: str | Path,
    output: str | Path,
    *,
    quantize: str | None = None,
    opset: int = OPSET,
    dev: str | Path | None = None,
    overwrite: bool = False,
    task_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`bertforge export`: write OUTPUT (model.onnx, model_optimized.onnx, with --quantize model_quantized.onnx,
    config.json, vocab.txt, bertforge.json, transformers' tokenizer files, export_report.json) from a fine-tuned
    model folder, atomically; returns the report. Raises when an fp32 graph differs from PyTorch by more than the
    tolerance (nothing is written then). `task_options` change the
    task settings the exported folder keeps (as `predict --task.KEY`)."""
    model_dir, output = Path(model_dir), Path(output)
    if quantize not in (None, *QUANTIZATIONS):
        raise BertforgeError(f"--quantize {quantize}: expected one of {', '.join(QUANTIZATIONS)}")
    if not model_dir.is_dir():
        raise BertforgeError(f"{model_dir}: no such model folder")
    check_output_dir(output, overwrite)
    if output.resolve() == model_dir.resolve():
        raise BertforgeError(f"{output}: the output folder must not be the model folder")
    if holds_files(output) and not overwrite:
        raise BertforgeError(f"{output} already exists; pass --overwrite to replace it")
    for module in ("onnx", "onnxscript", "onnxruntime"):
        need(module)
    settings = load_settings(model_dir, kinds_by_head())
    if settings.kind is None:
        raise BertforgeError(f"{model_dir}: a model without a task head; only fine-tuned models export")
    task = get_task(settings.kind, str(model_dir))
    settings = with_options(settings, task_options or {}, settings.max_seq_length)
    vocab = find_vocab(model_dir)
    check_vocab(model_dir, settings, vocab)
    model = task.head.from_pretrained(model_dir).eval()
    settings = task.sync(model, settings)  # e.g. the CRF transitions, from the weights being exported
    tokenizer = FullTokenizer(vocab, do_lower_case=settings.do_lower_case)
    dev_examples = read_dev(task, settings, tokenizer, dev) if dev is not None else None  # its problems first

    with atomic_dir(output) as tmp:
        portable, fp32, int8 = tmp / ONNX_FILE, tmp / OPTIMIZED_FILE, tmp / QUANTIZED_FILE
        log.info(f"exporting {model_dir} ({type(model).__name__}) with torch.onnx (dynamo), opset {opset}")
        export_graph(model, portable, opset, axes=task.input_axes)
        fusions = optimize(portable, fp32, model.config)
        fused = ", ".join(f"{k} {v}" for k, v in fusions.items() if v) or "none"
        log.info(f"ONNX Runtime optimizer fused: {fused}")
        candidates = {"fp32": OnnxBackend(fp32), "portable": OnnxBackend(portable)}
        if quantize:
            quantize_int8(fp32, int8)
            candidates[quantize] = OnnxBackend(int8)
        report = {
            "source": str(model_dir),
            "task": task.kind,
            "head": type(model).__name__,
            "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
            "onnxruntime": need("onnxruntime").__version__,
            "opset": opset,
            "quantize": quantize,
            "fusions": fusions,
            "files": {"portable": ONNX_FILE, "fp32": OPTIMIZED_FILE} | ({quantize: QUANTIZED_FILE} if quantize else {}),
            "sizes": {
                "pytorch": sum(p.stat().st_size for p in model_dir.glob("*.safetensors")),
                "portable": portable.stat().st_size,
                "fp32": fp32.stat().st_size,
            }
            | ({quantize: int8.stat().st_size} if quantize else {}),
        }
        report |= verify(task, settings, tokenizer, TorchBackend(model), candidates, dev, dev_examples)
        del candidates  # the sessions hold the files open
        shutil.copyfile(model_dir / "config.json", tmp / "config.json")
        shutil.copyfile(vocab, tmp / VOCAB_FILE)
        (tmp / SETTINGS_FILE).write_text(settings.to_json(), encoding="utf-8")
        for name, text in tokenizer_files(settings).items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
