import json

from bertforge.cli import main as cli
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
    assert 0 < stats["masked_token_fraction"] < 0.2 and 0 <= stats["nsp_random_fraction"] <= 1
