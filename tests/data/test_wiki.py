"""extract_wiki on a real (shortened) English Wikipedia dump, and the inputs it must refuse."""

import bz2
import gzip
import os
import re

import pytest

from bertforge.cli import main as cli
from bertforge.data.wiki import WikiReport, clean_article, extract_wiki
from bertforge.errors import BertforgeError

SITEINFO = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
    </namespaces>
  </siteinfo>
"""


def page(title: str, text: str, ns: int = 0, page_id: int = 1, redirect: str = "") -> str:
    redirect = f'    <redirect title="{redirect}" />\n' if redirect else ""
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n{redirect}"
        f"    <revision>\n      <id>{page_id + 100}</id>\n"
        f'      <text xml:space="preserve">{text}</text>\n    </revision>\n  </page>\n'
    )


@pytest.fixture(scope="module")
def extracted(enwiki):
    """The sample dump extracted with the defaults (once per session, tests/conftest.py): report and folder."""
    return enwiki, enwiki.shards[0].parent


def test_report(extracted):
    report, out = extracted
    assert isinstance(report, WikiReport)
    assert report.articles == 106  # what wikiextractor 3.1.0 returns for this sample
    assert set(report.skipped) <= {"empty", "short"}
    assert report.documents + sum(report.skipped.values()) == report.articles
    assert report.documents >= 100
    assert 15_000 < report.sentences < 30_000
    assert report.characters > 2_000_000
    assert report.shards == [out / "wiki_00000.txt"]
    assert sorted(os.listdir(out)) == ["wiki_00000.txt"]  # no temporary files left
    assert report.headings == 1671  # section headings wikiextractor 3.1.0 writes for the articles kept
    assert "106 articles" in report.summary() and "1671 section headings dropped" in report.summary()


def test_output_format(extracted):
    report, out = extracted
    text = (out / "wiki_00000.txt").read_text(encoding="utf-8")
    assert text.endswith("\n\n") and "\n\n\n" not in text
    documents = text[:-2].split("\n\n")
    assert len(documents) == report.documents
    lines = text.split("\n")
    assert sum(1 for line in lines if line) == report.sentences
    assert sum(len(line) for line in lines) == report.characters
    assert all(line == line.strip() for line in lines)
    for markup in ("[[", "]]", "{{", "}}", "<ref", "</", "&amp;", "&lt;", "&nbsp;", "()"):
        assert markup not in text, markup
    # Titles are dropped by default: the first document starts with its first sentence.
    assert documents[0].startswith("Anarchism is a political philosophy that advocates self-governed societies")
    # So are section headings: the Anarchism article's "Etymology and terminology." and "History." sections
    # start with their first sentence.
    assert not {"Etymology and terminology.", "History.", "Origins.", "See also.", "References."} & set(lines)
    assert '\nThe term "anarchism" is a compound word' in documents[0]


def test_sentence_spot_checks(extracted):
    _, out = extracted
    lines = set((out / "wiki_00000.txt").read_text(encoding="utf-8").split("\n"))
    for sentence in [
        "Anarchism considers the state to be undesirable, unnecessary, and harmful.",
        "R. S. P. Beekes has suggested a Pre-Greek origin of the name.",  # initials
        "The process used to extract the bitumen from the sand is a hot water process originally developed by "
        "Dr. Karl Clark of the University of Alberta during the 1920s.",
        "St. Stephens, now abandoned, served as the territorial capital from 1817 to 1819.",
    ]:
        assert sentence in lines, sentence
    assert any("Maj. Gen. Leonidas Polk and Brig. Gen. Gideon J. Pillow." in line for line in lines)
    for line in lines:  # no split right after a title
        assert not re.search(r"(?:^|\s)(?:Mr|Mrs|Dr|St|Gen|Brig|Maj|Lt|Col)\.$", line), line


def left_out(kept: list[str], default: list[str]) -> list[str]:
    """The lines of `kept` that `default` lacks, asserting that `default` is `kept` without them."""
    extra, rest = [], iter(default)
    expected = next(rest, None)
    for line in kept:
        if line == expected:
            expected = next(rest, None)
        else:
            extra.append(line)
    assert expected is None
    return extra


def test_titles_headings_shards_and_overwrite(sample, tmp_path, extracted, capsys):
    report, first = extracted
    (tmp_path / "wiki_00000.txt").write_text("old\n")
    (tmp_path / "wiki_99.txt").write_text("old\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(BertforgeError, match=r"already holds 2 wiki_\*\.txt.*overwrite"):
        extract_wiki(sample("enwiki-dump"), tmp_path, progress=False)
    again = extract_wiki(
        sample("enwiki-dump"),
        tmp_path,
        shard_size_mb=0.5,
        keep_titles=True,
        keep_headings=True,
        overwrite=True,
        processes=1,
    )
    assert "articles=106" in capsys.readouterr().err  # the progress bar
    assert (again.articles, again.documents, again.headings) == (report.articles, report.documents, report.headings)
    assert again.sentences == report.sentences + report.headings  # each heading is one line
    assert len(again.shards) >= 4
    assert [p.name for p in again.shards] == [f"wiki_{i:05d}.txt" for i in range(len(again.shards))]
    assert not (tmp_path / "wiki_99.txt").exists()  # stale shard of the old run removed
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    texts = [p.read_text(encoding="utf-8") for p in again.shards]
    for text in texts[:-1]:
        assert len(text.encode()) >= 0.5 * 1024 * 1024
    assert all(t.endswith("\n\n") and not t.startswith("\n") for t in texts)
    # Same documents, each now headed by its title, with its section headings where the sections start.
    documents = [d.split("\n") for t in texts for d in t[:-2].split("\n\n")]
    assert documents[0][:2] == [
        "Anarchism",
        "Anarchism is a political philosophy that advocates self-governed societies based on voluntary institutions.",
    ]
    default = [d.split("\n") for d in (first / "wiki_00000.txt").read_text(encoding="utf-8")[:-2].split("\n\n")]
    assert len(documents) == len(default)
    headings = [left_out(kept[1:], lines) for kept, lines in zip(documents, default)]
    assert sum(map(len, headings)) == report.headings
    assert headings[0][:4] == [
        "Etymology and terminology.",
        "History.",
        "Origins.",
        "First International and the Paris Commune.",
    ]
    at = documents[0].index("Etymology and terminology.")  # right before its section's first sentence
    assert documents[0][at + 1].startswith('The term "anarchism" is a compound word')


def test_clean_article():
    text = "&lt;onlyinclude&gt;\nAyn Rand ()  was born.\xa0It {{eqm}} works &amp; runs (;, ).\n\n  \n{{a|{{b}}}}"
    assert clean_article(text) == (["Ayn Rand was born. It works & runs."], 0)
    assert clean_article("") == ([], 0)
    marked = "Intro.\n## Life.\n## Early years.\nBorn &amp; raised.\n##No heading."
    assert clean_article(marked) == (["Intro.", "Born & raised.", "##No heading."], 2)
    assert clean_article(marked, keep_headings=True) == (
        ["Intro.", "Life.", "Early years.", "Born & raised.", "##No heading."],
        2,
    )


def _bz2(path, text):
    path.write_bytes(bz2.compress(text.encode()))
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("dump.xml", b"", "the file is empty"),
        ("dump.xml", b"Just some plain text.\nNot a dump.\n", "does not start with <mediawiki"),
        ("dump.xml", bytes(range(256)) * 8, "is not UTF-8 text"),
        ("dump.xml.bz2", bytes(range(256)) * 8, "the content is not compressed but the name says bz2"),
        ("dump.xml.bz2", b"BZh9" + bytes(range(256)) * 8, "bzip2 stream is truncated"),
        ("page.html", b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "HTML page"),
        ("dump.xml", bz2.compress(SITEINFO.encode()), "content is bz2 but the name says plain XML.*xml.bz2"),
        ("dump.xml", (SITEINFO + page("A", "B " * 500)).encode(), "does not end with </mediawiki>"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    dump = tmp_path / name
    dump.write_bytes(content)
    with pytest.raises(BertforgeError, match=message) as info:
        extract_wiki(dump, tmp_path / "out", progress=False)
    assert str(dump) in str(info.value)
    assert not (tmp_path / "out").exists()  # checked before anything is created


def test_missing_file_and_bad_output(tmp_path):
    with pytest.raises(BertforgeError, match="no such file") as info:
        extract_wiki(tmp_path / "nope.xml.bz2", tmp_path / "out")
    assert "nope.xml.bz2" in str(info.value)
    dump = _bz2(tmp_path / "d.xml.bz2", SITEINFO + page("A", "Text. " * 50) + "</mediawiki>\n")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BertforgeError, match="not a directory"):
        extract_wiki(dump, tmp_path / "file")


def test_truncated_real_dump(sample, tmp_path):
    dump = tmp_path / "enwiki.xml.bz2"
    dump.write_bytes(sample("enwiki-dump").read_bytes()[:900_000])
    with pytest.raises(BertforgeError, match="truncated") as info:
        extract_wiki(dump, tmp_path / "out")
    assert str(dump) in str(info.value)


def test_no_articles(tmp_path):
    dump = _bz2(
        tmp_path / "d.xml.bz2",
        SITEINFO
        + page("Template:X", "{{{1}}}", ns=10)
        + page("Redirected", "#REDIRECT [[Elsewhere]]", page_id=2, redirect="Elsewhere")
        + "</mediawiki>\n",
    )
    with pytest.raises(BertforgeError, match="no articles") as info:
        extract_wiki(dump, tmp_path / "out", processes=1, progress=False)
    assert str(dump) in str(info.value)
    assert not list((tmp_path / "out").iterdir())
    empty = _bz2(tmp_path / "e.xml.bz2", SITEINFO + page("Empty", "{{Infobox}}") + "</mediawiki>\n")
    with pytest.raises(BertforgeError, match=r"all 1 articles were skipped \(\{'empty': 1\}\)$"):
        extract_wiki(empty, tmp_path / "out", processes=1, progress=False)


def test_all_articles_too_short(tmp_path):
    dump = _bz2(tmp_path / "d.xml.bz2", SITEINFO + page("Stub", "A stub.") + "</mediawiki>\n")
    with pytest.raises(BertforgeError, match=r"all 1 articles were skipped.*short.*min_chars"):
        extract_wiki(dump, tmp_path / "out", processes=1, progress=False)
    report = extract_wiki(dump, tmp_path / "out", min_chars=1, processes=1, progress=False)
    assert (tmp_path / "out" / "wiki_00000.txt").read_text() == "A stub.\n\n"
    assert (report.documents, report.sentences) == (1, 1)


def test_wikiextractor_crash_is_reported_not_hung(tmp_path):
    """A gzip stream cut short only fails once wikiextractor is extracting; its processes then wait on
    each other forever, so the run must be stopped and the error reported."""
    xml = SITEINFO + "".join(page(f"T{i}", "Some text here. " * 200, page_id=i) for i in range(1, 200))
    dump = tmp_path / "d.xml.gz"
    dump.write_bytes(gzip.compress((xml + "</mediawiki>\n").encode())[:-30])
    with pytest.raises(BertforgeError, match=r"wikiextractor failed.*EOFError") as info:
        extract_wiki(dump, tmp_path / "out", templates=False, processes=1, progress=False)
    assert str(dump) in str(info.value)
    assert not list((tmp_path / "out").glob("wiki_*"))


def test_chinese_and_markup_end_to_end(tmp_path):
    zh = (
        "'''北京'''是[[中华人民共和国|中国]]的首都。{{Infobox city|name=北京}}"
        "他说：“好。”然后走了。&lt;ref&gt;来源&lt;/ref&gt;\n\n== 历史 ==\n北京有三千多年的历史！真的吗？"
    )
    en = "'''AT&amp;T''' is a [[company]].&lt;ref name=\"a\"&gt;x&lt;/ref&gt; Mr. Smith runs it. It is big."
    dump = _bz2(
        tmp_path / "d.xml.bz2", SITEINFO + page("北京", zh) + page("AT&amp;T", en, page_id=2) + "</mediawiki>\n"
    )
    report = extract_wiki(dump, tmp_path / "out", min_chars=10, keep_titles=True, processes=1, progress=False)
    expected = (
        "北京\n北京是中国的首都。\n他说：“好。”\n然后走了。\n历史.\n北京有三千多年的历史！\n真的吗？\n\n"
        "AT&T\nAT&T is a company.\nMr. Smith runs it.\nIt is big.\n\n"
    )
    assert (tmp_path / "out" / "wiki_00000.txt").read_text(encoding="utf-8") == expected.replace("历史.\n", "")
    assert (report.articles, report.documents, report.sentences, report.headings) == (2, 2, 8, 1)
    # The command line keeps the section heading "== 历史 ==" on request.
    args = ["extract-wiki", str(dump), "--output", str(tmp_path / "cli"), "--min-chars", "10", "--processes", "1"]
    assert cli([*args, "--keep-titles", "--keep-headings", "--quiet"]) == 0
    assert (tmp_path / "cli" / "wiki_00000.txt").read_text(encoding="utf-8") == expected


def test_extract_wiki_command_passes_every_option_through(tmp_path, capsys):
    """`bertforge extract-wiki` writes what `extract_wiki` writes with the same options, and each option
    changes what is written (a template's text, a short article, titles, shards)."""
    from bertforge.cli import main as cli

    motto = page("Template:Motto", "Every option reaches the extractor.", ns=10, page_id=3)
    long = page("Long", "The first sentence is here. {{Motto}} " + "More text follows here. " * 8)
    short = page("Short", "Only a short article.", page_id=2)
    dump = _bz2(tmp_path / "d.xml.bz2", SITEINFO + motto + long + short + "</mediawiki>\n")

    def both(name: str, flags: list[str], **options) -> list[str]:
        assert cli(["extract-wiki", str(dump), "--output", str(tmp_path / name), "--processes", "1", *flags]) == 0
        report = extract_wiki(dump, tmp_path / f"{name}-api", processes=1, progress=False, **options)
        summary = report.summary().replace(f"{name}-api", name).rsplit(" in ", 1)[0]  # its own folder and time
        assert capsys.readouterr().out.startswith(f"{tmp_path / name}: {summary} in ")
        texts = [p.read_text(encoding="utf-8") for p in sorted((tmp_path / name).iterdir())]
        assert texts == [p.read_text(encoding="utf-8") for p in report.shards]
        return texts

    default = both("default", ["--quiet"])
    assert len(default) == 1 and "Every option reaches the extractor." in default[0]
    assert "Only a short article." not in default[0]
    options = ["--quiet", "--min-chars", "10", "--keep-titles", "--no-templates", "--shard-size", "0.0002"]
    changed = both("changed", options, min_chars=10, keep_titles=True, templates=False, shard_size_mb=0.0002)
    text = "".join(changed)
    assert len(changed) == 2 and "Only a short article." in text and "Every option" not in text
    assert text.startswith("Long\nThe first sentence is here.\n")
    assert cli(["extract-wiki", str(dump), "--output", str(tmp_path / "default"), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli(["extract-wiki", str(dump), "--output", str(tmp_path / "default"), "--quiet", "--overwrite",
                "--processes", "1"]) == 0  # fmt: skip
