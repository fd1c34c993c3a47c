"""NER readers on fixtures written from each format's specification and on real files: CLUENER JSON lines,
column files (MSRA BMES with CRLF, BIO with tabs, CoNLL-2003), MSRA inline markup, People's Daily POS."""

import zipfile
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.tasks.ner_readers import read_ner

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ner"


def entities(example):
    """(tag-run text, tag) pairs of the non-O words, to compare readable values."""
    return [(example.text[s:e], t) for (s, e), t in zip(example.words, example.tags) if t != "O"]


def test_cluener_spans_become_bioes_tags_on_characters():
    train, report = read_ner(FIXTURES / "cluener_train.json")
    assert len(train) == 3 and report.records == 3
    first = train[0]
    assert first.text.startswith("浙商银行") and len(first.words) == len(first.text)
    assert entities(first)[:4] == [("浙", "B-company"), ("商", "I-company"), ("银", "I-company"), ("行", "E-company")]
    assert ("叶", "B-name") in entities(first) and ("桂", "E-name") in entities(first)
    assert [t for t in train[1].tags if t != "O"] == ["B-game", "I-game", "I-game", "E-game"]
    assert sum(t.startswith("B-") for t in train[2].tags) == 4
    test, report = read_ner(FIXTURES / "cluener_test.json")
    assert test[0].tags is None and report.unlabelled == 1


def test_cluener_entity_that_does_not_match_the_text_names_the_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": "浙商银行", "label": {"company": {"浙商银行": [[1, 4]]}}}\n', encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"bad\.json line 1: bad entity: company '浙商银行' at \[1, 4\]"):
        read_ner(bad)
    (good := tmp_path / "good.json").write_text(bad.read_text() + (FIXTURES / "cluener_train.json").read_text())
    examples, report = read_ner(good, skip_bad_lines=True)
    assert len(examples) == 3 and report.skipped["bad entity"] == 1


def test_column_files_bmes_crlf_bio_tabs_and_conll():
    bmes, _ = read_ner(FIXTURES / "msra_bmes.txt")
    assert [e.text for e in bmes] == ["中共中央致电江泽民", "我在京。"]
    assert bmes[0].tags == ["B-ORG", "M-ORG", "M-ORG", "E-ORG", "O", "O", "B-PER", "M-PER", "E-PER"]
    assert bmes[1].tags[2] == "S-LOC" and bmes[1].source.endswith("msra_bmes.txt line 11")
    bio, _ = read_ner(FIXTURES / "dh_bio.txt")
    assert [e.text for e in bio] == [e.text for e in bmes] and bio[0].tags[1] == "I-ORG"
    conll, _ = read_ner(FIXTURES / "conll.txt")
    assert [e.tokens for e in conll] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]]
    assert conll[0].text == "EU rejects German call ." and conll[0].words[2] == (11, 17)
    assert conll[1].tags == ["B-PER", "I-PER"]
    chunks, _ = read_ner(FIXTURES / "conll.txt", tag_column=2)  # another column as the tag
    assert chunks[0].tags[:2] == ["B-NP", "B-VP"]


def test_column_file_problems_name_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("中 B-ORG\n国\n\n我 O\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"bad\.txt line 2: bad line: no tag column"):
        read_ner(bad)
    examples, report = read_ner(bad, skip_bad_lines=True)
    assert [e.text for e in examples] == ["我"] and report.skipped["bad line"] == 1
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(BertforgeError, match="empty.txt: file is empty"):
        read_ner(tmp_path / "empty.txt")


def test_msra_inline_markup():
    (example,), _ = read_ner(FIXTURES / "msra.xml.txt", "msra-xml")
    assert example.text == "江泽民主席昨天在北京会见了联合国代表团，共三十人。"
    assert entities(example) == [
        ("江", "B-PER"), ("泽", "I-PER"), ("民", "E-PER"), ("昨", "B-DATE"), ("天", "E-DATE"),
        ("北", "B-LOC"), ("京", "E-LOC"), ("联", "B-ORG"), ("合", "I-ORG"), ("国", "E-ORG"),
        ("三", "B-CARDINAL"), ("十", "E-CARDINAL"),
    ]  # fmt: skip


def test_peoples_daily_pos_tags_become_entities():
    first, second = read_ner(FIXTURES / "peoples_daily.txt", "peoples-daily")[0]
    assert first.text == "中共中央总书记、国家主席江泽民"  # the sentence id is not text
    assert [t for t in first.tags if t != "O"] == ["B-ORG", "I-ORG", "I-ORG", "E-ORG", "B-PER", "I-PER", "E-PER"]
    assert second.text.startswith("中央人民广播电台记者在北京")
    assert second.tags[:8] == ["B-ORG"] + ["I-ORG"] * 6 + ["E-ORG"]  # the bracketed compound is one entity
    assert second.tags[11:13] == ["B-LOC", "E-LOC"]


def test_real_files(sample, tmp_path):
    """The real People's Daily month and Hugging Face datasets' real NER lines."""
    examples, report = read_ner(sample("peoples-daily"), "peoples-daily")
    assert len(examples) > 19000 and not report.skipped
    persons = sum(t == "B-PER" for e in examples[:2000] for t in e.tags)
    assert persons > 100
    for task, name in (
        ("conll2003", "train.txt"),
        ("peoples_daily_ner", "example.train"),
        ("msra_ner", "msra_train_bio.txt"),
    ):
        with zipfile.ZipFile(sample(f"{task}-dummy") / task / "1.0.0" / "dummy_data.zip") as zf:
            zf.extractall(tmp_path / task)
        examples, _ = read_ner(tmp_path / task / "dummy_data" / name, skip_bad_lines=True)
        assert examples and all(len(e.tags) == len(e.words) for e in examples), task
    conll = read_ner(tmp_path / "conll2003" / "dummy_data" / "train.txt")[0]
    assert conll[0].tokens[:3] == ["The", "European", "Commission"] and conll[0].tags[1] == "B-ORG"
    msra = sample("msra-ner")
    train, _ = read_ner(msra / "msra_train.txt")
    assert len(train) == 50289 and {t[0] for e in train[:500] for t in e.tags} <= {"B", "M", "E", "S", "O"}
    test, _ = read_ner(msra / "msra_test.txt")
    assert len(test) == 5000


@pytest.mark.parametrize(
    ("line", "tag"), [("王 B-", "B-"), ("王 b-per", "b-per"), ("王 PERSON", "PERSON"), ("王\t", ""), ("王 I", "I")]
)
def test_a_malformed_tag_names_its_file_and_line(tmp_path, line, tag):
    path = tmp_path / "bad.txt"
    path.write_text(f"在 O\n\n我 O\n{line}\n芳 O\n\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=rf"bad\.txt line 4: bad tag '{tag}': expected O, or B-, I-, M-"):
        read_ner(path)
    examples, report = read_ner(path, skip_bad_lines=True)  # or skipped and counted
    assert len(examples) == 1 and report.skipped


def test_an_entity_without_a_type_names_its_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"text": "王芳", "label": {"": {"王芳": [[0, 1]]}}}\n', encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"c\.json line 1: bad entity at 0:2: no type"):
        read_ner(path)
