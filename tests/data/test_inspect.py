import json

import numpy as np
import pytest

from bertforge.cli import main as cli
from bertforge.data import PretrainingDataset
from bertforge.data.create import CreateOptions, create_pretraining_data

TEXT = "\n".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(40))


def test_inspect_prints_records_and_statistics(tmp_path, sample, capsys):
    (tmp_path / "in.txt").write_text(TEXT + "\n\n" + TEXT.replace("topic", "subject") + "\n")
    create_pretraining_data(
        [tmp_path / "in.txt"], sample("vocab-en"), tmp_path / "ds", CreateOptions(dupe_factor=3), progress=False
    )
    assert cli(["inspect", str(tmp_path / "ds"), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[0] [CLS] ") and "[1] [CLS] " in out and "[MASK]→" in out and " | " in out
    assert "NSP: " in out and '"mask_split"' in out and '"length_histogram"' in out
    assert cli(["inspect", str(tmp_path / "ds"), "--json", "--limit", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    stats = data["statistics"]
    assert len(data["records"]) == 1 and set(data["records"][0]) >= {"input_ids", "masked_lm_positions"}
    assert stats["instances"] == sum(stats["length_histogram"].values()) > 0
    # The statistics against counts taken here from every instance (was: fractions within a range).
    dataset = PretrainingDataset(tmp_path / "ds")
    items, mask_id = [dataset[i] for i in range(stats["instances"])], dataset.masking.mask_id
    tokens = sum(int(it["input_mask"].sum()) for it in items)
    masked = [(it["input_ids"][p], o) for it in items for p, o, w in
              zip(it["masked_lm_positions"], it["masked_lm_ids"], it["masked_lm_weights"]) if w]  # fmt: skip
    assert stats["tokens"] == tokens and stats["masked_token_fraction"] == pytest.approx(len(masked) / tokens)
    assert stats["nsp_random_fraction"] == pytest.approx(np.mean([int(it["next_sentence_labels"]) for it in items]))
    split = {"mask": sum(now == mask_id for now, _ in masked), "kept": sum(now == o != mask_id for now, o in masked)}
    split["random"] = len(masked) - split["mask"] - split["kept"]
    assert stats["mask_split"] == pytest.approx({k: v / len(masked) for k, v in split.items()})
    assert 0 < split["kept"] and 0 < split["random"]  # all three kinds occur, so a swap of two would show
