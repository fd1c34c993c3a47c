"""Checkpoints on disk: only the newest `keep` are kept (by step, not by name length), and the newest complete
one is found when the `latest` pointer names one that never finished. (Until now only a slow kill-and-resume test
looked at which checkpoints remain.)"""

import shutil

from bertforge.training.checkpoints import checkpoint_dir, latest_checkpoint, save_checkpoint


class Weights:
    def save_pretrained(self, folder):
        (folder / "model.safetensors").write_bytes(b"weights")


def test_only_the_newest_checkpoints_are_kept_and_found(tmp_path):
    for step in (1, 2, 9, 10, 11):
        save_checkpoint(tmp_path, step, Weights(), {"step": step}, keep=2)
    root = checkpoint_dir(tmp_path)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000010", "step-00000011"]
    assert latest_checkpoint(tmp_path) == root / "step-00000011"
    (root / "step-00000011" / "trainer.pt").unlink()  # killed while writing it: the pointer names a wreck
    assert latest_checkpoint(tmp_path) == root / "step-00000010"
    save_checkpoint(tmp_path, 12, Weights(), {"step": 12}, keep=1)
    assert [p.name for p in root.iterdir() if p.is_dir()] == ["step-00000012"]
    shutil.rmtree(root / "step-00000012")
    assert latest_checkpoint(tmp_path) is None
