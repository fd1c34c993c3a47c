"""Wikipedia `pages-articles` dump -> pretraining text: one sentence per line, a blank line between articles.

That is the layout Google's `create_pretraining_data.py` and the MindSpore model zoo read. The wikitext is
cleaned by `wikiextractor` (the `data` extra, pinned), run as a child process with `--json`: it parallelises
with fork()ed workers and writes its own logs, neither of which we want inside a process that may have
torch loaded, and JSON lines give us article boundaries and titles. We only validate the input, tidy what
wikiextractor leaves behind, drop section headings, split sentences and write size-bounded shards atomically.
"""

from __future__ import annotations

import bz2
import codecs
import collections
import contextlib
import gzip
import html
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from bertforge.data.sentences import split_sentences
from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path, check_output_dir

logger = logging.getLogger(__name__)

SHARD_PATTERN = re.compile(r"wiki_\d+\.txt")
HEADING = "## "  # how wikiextractor marks a section heading line when asked to (`mark_headers`)
_HEAD_BYTES = 64 * 1024
_BZ2_END_OF_STREAM = 0x177245385090  # 48-bit marker closing every bzip2 stream (then a 32-bit CRC)


@dataclass
class WikiReport:
    """What `extract_wiki` wrote; `summary()` is the line the CLI prints."""

    articles: int = 0  # articles wikiextractor returned (main namespace, no redirects)
    documents: int = 0  # articles written
    sentences: int = 0
    characters: int = 0  # of the lines written, newlines excluded
    headings: int = 0  # section headings in the articles written (dropped unless keep_headings)
    headings_kept: bool = False
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count: "empty", "short"
    shards: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        where = self.shards[0].parent if self.shards else "-"
        headings = f"{self.headings} section headings {'kept' if self.headings_kept else 'dropped'}"
        return (
            f"{self.articles} articles -> {self.documents} documents, {self.sentences} sentences, "
            f"{self.characters} characters in {len(self.shards)} shard(s) under {where} "
            f"(skipped: {skipped}; {headings}) in {self.seconds:.1f}s"
        )


def extract_wiki(
    dump: str | Path,
    output_dir: str | Path,
    *,
    shard_size_mb: float = 100.0,
    min_chars: int = 100,
    keep_titles: bool = False,
    keep_headings: bool = False,
    templates: bool = True,
    processes: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> WikiReport:
    """Extract `dump` (.xml, .xml.bz2 or .xml.gz) into `output_dir/wiki_NN.txt` shards of about
    `shard_size_mb` MB. Articles whose cleaned text is shorter than `min_chars` are skipped; titles are
    dropped unless `keep_titles` (Google's own Wikipedia preprocessing dropped them), and so are section
    headings ("History.") unless `keep_headings`: neither is a sentence of the text. `templates=False`
    skips wikiextractor's template-expansion pass: faster, but text produced by templates is lost.
    `processes` defaults to one fewer than the CPU count."""
    start = time.perf_counter()
    dump, output_dir = Path(dump), Path(output_dir)
    if shard_size_mb <= 0:
        raise BertforgeError(f"shard size must be positive, got {shard_size_mb} MB")
    check_dump(dump)
    stale = _prepare_output(output_dir, overwrite)
    report = WikiReport(headings_kept=keep_headings)
    skipped: collections.Counter[str] = collections.Counter()
    with _ShardWriter(output_dir, int(shard_size_mb * 1024 * 1024)) as shards:
        for article in _run_wikiextractor(dump, templates, processes, progress):
            report.articles += 1
            paragraphs, headings = clean_article(article["text"], keep_headings)
            if not paragraphs:
                skipped["empty"] += 1
                continue
            if sum(len(p) for p in paragraphs) < min_chars:
                skipped["short"] += 1
                continue
            sentences = [s for p in paragraphs for s in split_sentences(p)]
            # wikiextractor copies titles from the XML as they are, entities included ("AT&amp;T").
            lines = [html.unescape(article["title"]), *sentences] if keep_titles else sentences
            shards.write("\n".join(lines) + "\n\n")
            report.documents += 1
            report.headings += headings
            report.sentences += len(sentences)
            report.characters += sum(len(line) for line in lines)
    report.skipped = dict(skipped)
    report.shards = shards.paths
    if report.articles == 0:
        raise BertforgeError(f"{dump}: wikiextractor found no articles (main-namespace pages that are not redirects)")
    if report.documents == 0:
        hint = f"; lower min_chars (now {min_chars})" if skipped["short"] else ""
        raise BertforgeError(f"{dump}: all {report.articles} articles were skipped ({dict(skipped)}){hint}")
    for path in stale:
        if path not in report.shards:
            path.unlink(missing_ok=True)  # left from an earlier, longer run that `overwrite` replaces
    report.seconds = time.perf_counter() - start
    return report


# --- input validation --------------------------------------------------------------------------------


def check_dump(path: str | Path) -> None:
    """Raise BertforgeError unless `path` looks like a complete MediaWiki XML export.

    wikiextractor itself accepts anything (plain text yields zero articles, a truncated .bz2 ends in a
    traceback), so we check the start of the XML and, where it is cheap, that the file is not cut short."""
    path = Path(path)
    expected = "expected a Wikipedia pages-articles dump (.xml or .xml.bz2)"
    if not path.exists():
        raise BertforgeError(f"{path}: no such file; {expected}")
    if not path.is_file():
        raise BertforgeError(f"{path}: not a regular file; {expected}")
    if path.stat().st_size == 0:
        raise BertforgeError(f"{path}: the file is empty; {expected}")
    with open(path, "rb") as f:
        magic = f.read(3)
    compression = "bz2" if magic == b"BZh" else "gz" if magic[:2] == b"\x1f\x8b" else None
    by_name = {".bz2": "bz2", ".gz": "gz"}.get(path.suffix)  # how wikiextractor picks the decompressor
    if compression != by_name:
        fix = f"name it *.xml.{compression}" if compression else "decompress it or fix its name"
        raise BertforgeError(
            f"{path}: the content is {compression or 'not compressed'} but the name says "
            f"{by_name or 'plain XML'}; wikiextractor goes by the name, so {fix}"
        )
    if compression == "bz2" and not _bz2_complete(path):
        raise BertforgeError(
            f"{path}: the bzip2 stream is truncated (no end-of-stream marker); the download is probably incomplete"
        )
    opener = {"bz2": bz2.open, "gz": gzip.open, None: open}[compression]
    try:
        with opener(path, "rb") as f:
            data = f.read(_HEAD_BYTES)
    except (OSError, EOFError) as exc:
        raise BertforgeError(f"{path}: cannot be decompressed as {compression} ({exc}); {expected}") from None
    try:
        head = codecs.getincrementaldecoder("utf-8")().decode(data)  # a character cut at the end is fine
    except UnicodeDecodeError as exc:
        raise BertforgeError(
            f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start}), so it is not "
            f"a MediaWiki XML dump; {expected}"
        ) from None
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("<?xml"):
        text = text[text.find("?>") + 2 :].lstrip()
    if not re.match(r"<mediawiki[\s>]", text):
        if re.search(r"<!doctype html|<html[\s>]", head[:4096], re.IGNORECASE):
            raise BertforgeError(
                f"{path}: this is an HTML page, not a MediaWiki XML dump (a saved error or download page?); {expected}"
            )
        raise BertforgeError(
            f"{path}: does not start with <mediawiki ...>, so it is not a MediaWiki XML dump; {expected}"
        )
    if compression is None and not _xml_complete(path):
        raise BertforgeError(f"{path}: does not end with </mediawiki>; the file is truncated")


def _bz2_complete(path: Path) -> bool:
    """Whether the file ends with a bzip2 end-of-stream marker: 48 bits + 32-bit CRC + 0-7 padding bits."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 11))
        tail = int.from_bytes(f.read(), "big")
    return any((tail >> (32 + pad)) & (2**48 - 1) == _BZ2_END_OF_STREAM for pad in range(8))


def _xml_complete(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 1024))
        return b"</mediawiki>" in f.read()


def _prepare_output(output_dir: Path, overwrite: bool) -> list[Path]:
    """Create `output_dir`; return the shards already in it, refusing to mix runs unless `overwrite`."""
    check_output_dir(output_dir, overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(p for p in output_dir.iterdir() if SHARD_PATTERN.fullmatch(p.name))
    if existing and not overwrite:
        raise BertforgeError(
            f"{output_dir}: already holds {len(existing)} wiki_*.txt shard(s) "
            f"({existing[0].name}, ...); pass overwrite=True (--overwrite) to replace them"
        )
    return existing


# --- cleaning ----------------------------------------------------------------------------------------

# wikiextractor leaves a few things behind: tags it does not know (<onlyinclude>), templates it could not
# parse ({{eqm}}), and "()" where a template such as a pronunciation used to be.
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s+[A-Za-z_:-]+\s*=[^<>]*)?\s*/?>")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_EMPTY_PARENS = re.compile(r"\s*[(（][\s,;:，；、'\"“”‘’]*[)）]")
_SPACES = re.compile(r"\s+")


def clean_article(text: str, keep_headings: bool = False) -> tuple[list[str], int]:
    """wikiextractor's text of one article (headings marked) -> its non-empty paragraphs, tidied and
    whitespace-normalised, and the number of section headings in it (left out unless `keep_headings`)."""
    # wikiextractor's CLI always HTML-escapes its output (its --html-safe flag cannot be turned off).
    paragraphs = []
    headings = 0
    for line in html.unescape(text).split("\n"):
        if line.startswith(HEADING):
            headings += 1
            if not keep_headings:
                continue
            line = line[len(HEADING) :]
        if "<" in line:
            line = _TAG.sub("", line)
        while "{{" in line:
            line, n = _TEMPLATE.subn("", line)
            if not n:
                break
        if "(" in line or "（" in line:
            line = _EMPTY_PARENS.sub("", line)
        line = _SPACES.sub(" ", line).strip()
        if line:
            paragraphs.append(line)
    return paragraphs, headings


# --- running wikiextractor ---------------------------------------------------------------------------

# wikiextractor writes a section heading as a line of its own ("History."), which looks like a one-sentence
# paragraph. Its Extractor.clean_text can mark headings ("## History.": no text line starts with "#", list
# items are dropped), but its command line never asks for that; this entry point does. wikiextractor forks
# its workers (on every platform but Windows), so they run the marking clean_text too.
_WIKIEXTRACTOR_MAIN = """
import sys
from wikiextractor import WikiExtractor, extract
clean_text = extract.Extractor.clean_text
extract.Extractor.clean_text = lambda self, text, **kw: clean_text(self, text, **{**kw, "mark_headers": True})
sys.argv[0] = "wikiextractor"
WikiExtractor.main()
"""


def _run_wikiextractor(dump: Path, templates: bool, processes: int | None, progress: bool) -> Iterator[dict[str, Any]]:
    """Yield wikiextractor's JSON articles ({"id", "title", "text", ...}) in dump order.

    Its child processes run in their own session so that all of them can be stopped together: when one
    of them dies, the others wait for its output forever (seen with a corrupt dump and --no-templates)."""
    if importlib.util.find_spec("wikiextractor") is None:
        raise BertforgeError("wikiextractor is not installed; run `pip install wikiextractor==3.1.0`")
    processes = processes or max(1, (os.cpu_count() or 2) - 1)
    cmd = [
        sys.executable,
        "-c",
        _WIKIEXTRACTOR_MAIN,
        "--json",
        "--output",
        "-",
        "--processes",
        str(processes),
        *([] if templates else ["--no-templates"]),
        str(dump),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    bar = _Progress(proc.pid, dump, enabled=progress, templates=templates)
    log = _StderrWatcher(proc.stderr, bar, on_crash=lambda: _stop(proc))
    finished = False
    try:
        for line in proc.stdout:
            article = json.loads(line)
            bar.articles += 1
            yield article
        finished = True
    finally:
        if not finished:  # the consumer failed or stopped early
            _stop(proc)
        proc.wait()
        log.join()
        bar.close()
    if proc.returncode != 0:
        raise BertforgeError(f"{dump}: wikiextractor failed (exit status {proc.returncode}): {log.last_error()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()


class _StderrWatcher:
    """Drains wikiextractor's log in a thread: keeps its tail for error messages, tells the progress bar
    which pass is running, and stops the run a moment after a traceback (its processes do not exit)."""

    def __init__(self, stream: IO[bytes], bar: _Progress, on_crash: Any) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._bar, self._on_crash = bar, on_crash
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        crash_timer = None
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            if "Starting page extraction" in line:
                self._bar.phase = "articles"
            elif line.startswith(("WARNING:", "ERROR:")):
                logger.warning("wikiextractor: %s", line.split(": ", 1)[-1])
            elif line.startswith("Traceback") and crash_timer is None:
                crash_timer = threading.Timer(1.0, self._on_crash)  # time to collect the whole traceback
                crash_timer.daemon = True
                crash_timer.start()

    def join(self) -> None:
        self._thread.join(timeout=5)

    def last_error(self) -> str:
        errors = [line for line in self.tail if line and not line.startswith(("INFO:", " "))]
        return errors[-1] if errors else "no error message"


class _Progress:
    """A tqdm bar on stderr. On Linux it follows wikiextractor's read position in the dump (through
    /proc), once for the template pass and once for the article pass; elsewhere it counts articles."""

    def __init__(self, pid: int, dump: Path, *, enabled: bool, templates: bool) -> None:
        self.articles = 0
        self.phase = "templates" if templates else "articles"
        self._pid, self._dump = pid, str(dump.resolve())
        self._by_bytes = Path(f"/proc/{pid}/fdinfo").is_dir()
        self._size = dump.stat().st_size
        self._bar = tqdm(
            total=self._size if self._by_bytes else None,
            desc=self.phase,
            unit="B" if self._by_bytes else " articles",
            unit_scale=True,
            disable=not enabled,
            file=sys.stderr,
        )
        self._shown = self.phase
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if enabled:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._update()

    def _update(self) -> None:
        if self.phase != self._shown:
            self._shown = self.phase
            self._bar.reset(total=self._size if self._by_bytes else None)
            self._bar.set_description(self.phase, refresh=False)
        position = _read_position(self._pid, self._dump) if self._by_bytes else self.articles
        if position is not None:
            self._bar.n = position
        self._bar.set_postfix(articles=self.articles, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self.phase = "articles"
            self._update()
            if self._by_bytes:
                self._bar.n = self._size
        self._bar.close()


def _read_position(pid: int, path: str) -> int | None:
    """Offset of process `pid` in its open file `path` (Linux /proc), or None when not open/readable."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    return int(f.readline().split()[1])  # "pos:\t12345"
    except (OSError, ValueError, IndexError):
        pass
    return None


# --- output ------------------------------------------------------------------------------------------


class _ShardWriter:
    """Writes documents into wiki_00000.txt, wiki_00001.txt, ...; a shard is closed once it reaches
    `limit` bytes and only then appears under its name (atomically), so a killed run leaves no half shard."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.paths: list[Path] = []
        self._directory, self._limit = directory, limit
        self._stack = contextlib.ExitStack()
        self._file: IO[bytes] | None = None
        self._size = 0

    def write(self, text: str) -> None:
        if self._file is None:
            path = self._directory / f"wiki_{len(self.paths):05d}.txt"  # sorts in order by name
            tmp = self._stack.enter_context(atomic_path(path))
            self._file = self._stack.enter_context(open(tmp, "wb"))
            self.paths.append(path)
        data = text.encode("utf-8")
        self._file.write(data)
        self._size += len(data)
        if self._size >= self._limit:
            self._commit()

    def _commit(self) -> None:
        self._stack.close()  # closes the file, then renames it into place
        self._stack, self._file, self._size = contextlib.ExitStack(), None, 0

    def __enter__(self) -> _ShardWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._commit()
        else:
            if self._file is not None:
                self.paths.pop()
            self._stack.__exit__(*exc)  # atomic_path sees the error and removes the partial shard
