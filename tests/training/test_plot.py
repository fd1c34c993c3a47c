"""plot_run: PNG curves from metrics.jsonl."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bertforge.errors import BertforgeError
from bertforge.training.metrics_log import METRICS_FILE, MetricsLogger
from bertforge.training.plot import DPI, FIGSIZE, drop_restarted, plot_run, smooth

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fake_run(run_dir, steps: int = 200) -> None:
    rng = np.random.default_rng(0)
    with MetricsLogger(run_dir) as logger:
        for step in range(1, steps + 1):
            mlm = 8 * math.exp(-step / 60) + 1.5 + 0.3 * rng.standard_normal()
            nsp = 0.7 * math.exp(-step / 40) + 0.05 + 0.05 * rng.standard_normal()
            logger.log(
                step,
                {
                    "loss": mlm + nsp,
                    "mlm_loss": mlm,
                    "nsp_loss": nsp,
                    "mlm_accuracy": min(0.7, step / 250) + 0.02 * rng.standard_normal(),
                    "lr": 1e-4 * min(1.0, step / 20) * (1 - step / (steps + 1)),
                    "grad_norm": abs(1.0 + 0.3 * rng.standard_normal()),
                    "loss_scale": 2.0 ** (16 - step // 70),
                    "tokens_per_second": 52_000 + 2_000 * rng.standard_normal(),
                },
            )


def test_plot_run_writes_readable_pngs(tmp_path):
    import matplotlib.image as matplotlib_image

    _fake_run(tmp_path)
    paths = plot_run(tmp_path)
    names = [p.name for p in paths]
    # nsp_accuracy is missing but mlm_accuracy makes the accuracy group
    assert names == [
        "loss.png",
        "accuracy.png",
        "learning_rate.png",
        "grad_norm.png",
        "loss_scale.png",
        "throughput.png",
    ]
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        height, width = matplotlib_image.imread(path).shape[:2]
        assert (width, height) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]  # no temp files left


def test_only_groups_with_data_and_custom_output(tmp_path):
    with MetricsLogger(tmp_path / "run") as logger:
        for step in range(5):
            logger.log(step, {"loss": 1.0 / (step + 1), "other": 1.0})
    paths = plot_run(tmp_path / "run", output=tmp_path / "out")
    assert paths == [tmp_path / "out" / "loss.png"]
    assert paths[0].stat().st_size > 1000


def test_errors_name_the_run_dir(tmp_path):
    with pytest.raises(BertforgeError, match=f"{tmp_path}.*no {METRICS_FILE}"):
        plot_run(tmp_path)
    (tmp_path / METRICS_FILE).write_text("")
    with pytest.raises(BertforgeError, match="no metrics to plot"):
        plot_run(tmp_path)
    assert not (tmp_path / "plots").exists()


def test_drop_restarted_keeps_the_latest_history():
    steps = [1, 2, 3, 3, 4, 2, 3, 5]
    kept = drop_restarted([{"step": s, "i": i} for i, s in enumerate(steps)])
    assert [(r["step"], r["i"]) for r in kept] == [(1, 0), (2, 5), (3, 6), (5, 7)]


def test_smooth_is_debiased_and_skips_nan():
    out = smooth(np.array([4.0, np.nan, 4.0, 4.0]), 0.9)
    np.testing.assert_allclose(out[[0, 2, 3]], 4.0)
    assert math.isnan(out[1])
