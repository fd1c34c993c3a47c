"""The CUDA-only paths: autocast training in bf16/fp16, the fp16 loss scaler on a real overflow through the
loop, and SDPA's CUDA kernels in training. No samples: data is Google's TFRecord fixture (303 instances).
Without a CUDA device these are skipped and listed in the summary (tests/conftest.py); scripts/gpu_check.sh
runs them."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertforge.data import PretrainingDataset
from bertforge.modeling import BertConfig, BertForPreTraining
from bertforge.training import load_config
from bertforge.training.pretrain import PRETRAINING, collate, pretrain

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
DATA = ROOT / "tests" / "fixtures" / "tfrecord" / "google_en.tfrecord"


def tiny(*overrides):
    return load_config(TINY, [f"data.path={DATA}", "train.device=cuda", "train.batch_size=8", *overrides])


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_learns(precision, tmp_path):
    final = pretrain(tiny("train.train_steps=40", "train.log_steps=10", f"train.precision={precision}"), tmp_path)
    rows = metrics(tmp_path)
    assert rows[-1]["mlm_loss"] < rows[0]["mlm_loss"] - 0.5, rows
    assert all(torch.isfinite(t).all() for t in load_file(final / "model.safetensors").values())


def test_fp16_overflow_is_skipped_and_halves_the_scale(tmp_path):
    """A loss scale of 2^40 overflows fp16 gradients: every step is skipped, the scale halves each time and the
    weights stay the seeded initial ones."""
    config = tiny("train.train_steps=3", "train.log_steps=1", "train.precision=fp16", f"loss_scale.init_scale={2**40}")
    final = pretrain(config, tmp_path)
    assert [(r["skipped_steps"], r["loss_scale"]) for r in metrics(tmp_path)] == [(1, 2**39), (2, 2**38), (3, 2**37)]
    torch.manual_seed(config.train.seed)
    initial = BertForPreTraining(config.bert_config()).state_dict()
    saved = load_file(final / "model.safetensors")
    assert all(torch.equal(saved[name], initial[name]) for name in saved)


def test_sdpa_cuda_kernels_match_cpu_in_training():
    """Loss and gradients of a padded batch on CUDA (SDPA's fused kernels, fp32 and bf16) against the CPU."""
    torch.manual_seed(0)
    config = BertConfig.from_preset("tiny", vocab_size=30522, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    dataset = PretrainingDataset(DATA)
    batch = collate([dataset[i] for i in range(8)])
    assert not bool(batch["input_mask"].all())  # padded: the attention mask matters

    def loss_and_grads(device: str, dtype: torch.dtype | None):
        torch.manual_seed(0)
        model = BertForPreTraining(config).to(device)
        mb = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            loss = PRETRAINING.loss(PRETRAINING.sums(model, mb), PRETRAINING.totals([mb]))
        loss.backward()
        return loss.float().cpu(), {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}

    cpu_loss, cpu_grads = loss_and_grads("cpu", None)
    cuda_loss, cuda_grads = loss_and_grads("cuda", None)
    torch.testing.assert_close(cuda_loss, cpu_loss, atol=1e-4, rtol=1e-4)
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[name], grad, atol=1e-4, rtol=1e-3, msg=name)
    bf16_loss, _ = loss_and_grads("cuda", torch.bfloat16)
    assert abs(bf16_loss.item() - cpu_loss.item()) < 0.02 * cpu_loss.item()
