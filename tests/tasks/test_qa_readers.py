"""SQuAD-layout readers on real files (the first two SQuAD v1.1 training articles, SQuAD v2.0 lines, CMRC2018
and MLQA Chinese snippets, all from Hugging Face datasets' test data) and on fixtures written from the formats'
specifications: v2.0 with impossible questions, DRCD-like traditional Chinese, bad answer_start, bad structure."""

import json
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertforge.errors import BertforgeError
from bertforge.tasks.qa_readers import QaExample, read_qa

SQUAD_V1 = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/squad1.1/train-v1.1.json"
MLQA_ZH = "dummy_data/xglue_full_dataset.tar.gz/xglue_full_dataset/MLQA/MLQA_V1/dev/dev-context-zh-question-zh.json"


def unzip(sample, name: str, member: str, tmp_path):
    with zipfile.ZipFile(sample(name)) as zf:
        return zf.extract(member, tmp_path)


def write(tmp_path, document, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def squad(*paragraphs, version=None):
    """A SQuAD-layout document of one article holding (context, [qa, ...]) paragraphs."""
    document = {"data": [{"title": "t", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}]}
    return document | ({"version": version} if version else {})


def test_real_squad_v1_training_articles(sample, tmp_path):
    examples, report = read_qa(unzip(sample, "xglue-mlqa-dummy", SQUAD_V1, tmp_path))
    assert len(examples) == 1027 and report.records == 1027 and not report.skipped and report.unlabelled == 0
    assert len({e.context for e in examples}) == 121
    first = examples[0]
    assert first.qid == "5733be284776f41900661182"
    assert first.question == "To whom did the Virgin Mary allegedly appear in 1858 in Lourdes France?"
    assert first.answers == [("Saint Bernadette Soubirous", 515)] and not first.is_impossible
    assert first.source.endswith("train-v1.1.json: question 5733be284776f41900661182")
    assert all(e.context[s : s + len(t)] == t for e in examples for t, s in e.answers)
    assert len({e.qid for e in examples}) == 1027


def test_real_squad_v2_lines_with_a_version_key(sample, tmp_path):
    examples, _ = read_qa(unzip(sample, "squad_v2-dummy", "dummy_data/dev-v2.0.json", tmp_path))
    assert [e.qid for e in examples] == ["56ddde6b9a695914005b9628", "56ddde6b9a695914005b9629"]
    assert examples[0].answers == [("France", 159)] * 4 and not examples[0].is_impossible
    assert examples[1].answers[1] == ("in the 10th and 11th centuries", 87)


def test_real_cmrc2018_snippets(sample, tmp_path):
    zip_path = sample("clue-dummy") / "cmrc2018" / "1.0.0" / "dummy_data.zip"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(tmp_path, members=[n for n in zf.namelist() if n.startswith("dummy_data/")])
    train, _ = read_qa(tmp_path / "dummy_data" / "train.json")
    dev, _ = read_qa(tmp_path / "dummy_data" / "dev.json")
    assert (len(train), len(dev)) == (5, 3)
    assert dev[0].qid == "DEV_0_QUERY_0" and dev[0].question == "《战国无双3》是由哪两个公司合作开发的？"
    assert len(dev[0].answers) == 3 and all(dev[0].context[s : s + len(t)] == t for t, s in dev[0].answers)
    # CLUE's test file: placeholder answers ("FAKE_ANSWER_1" at -1), read as unlabelled questions
    test, report = read_qa(tmp_path / "dummy_data" / "test.json")
    assert len(test) == 5 and report.unlabelled == 5 and all(e.answers == [] for e in test)


def test_real_mlqa_chinese_without_a_version_key(sample, tmp_path):
    examples, _ = read_qa(unzip(sample, "xglue-mlqa-dummy", MLQA_ZH, tmp_path))
    assert len(examples) == 3
    assert all(e.context[s : s + len(t)] == t for e in examples for t, s in e.answers)


def test_squad_v2_impossible_questions_and_plausible_answers(tmp_path):
    context = "The Normans gave their name to Normandy, a region in France."
    path = write(
        tmp_path,
        squad(
            (
                context,
                [
                    {"id": "a", "question": "Where is Normandy?", "answers": [{"text": "France", "answer_start": 53}]},
                    {
                        "id": "b",
                        "question": "Who gave their name to Paris?",
                        "answers": [],
                        "plausible_answers": [{"text": "The Normans", "answer_start": 0}],
                        "is_impossible": True,
                    },
                ],
            ),
            version="v2.0",
        ),
    )
    examples, report = read_qa(path)
    assert examples[0] == QaExample("a", "Where is Normandy?", context, [("France", 53)], False, f"{path}: question a")
    assert examples[1].is_impossible and examples[1].answers == [] and examples[1].labelled
    assert report.unlabelled == 0


def test_drcd_like_traditional_chinese(tmp_path):
    context = "2010年引進的廣州快速公交運輸系統，屬世界第二大快速公交系統，日常載客量可達100萬人次。"
    document = {
        "version": "1.3",
        "data": [
            {
                "paragraphs": [
                    {
                        "context": context,
                        "id": "1001-11",
                        "qas": [
                            {
                                "id": "1001-11-1",
                                "question": "廣州的快速公交運輸系統每多久就會有一輛巴士？",
                                "answers": [{"id": "1", "text": "100萬人次", "answer_start": 39}],
                            },
                            {
                                "id": 10011102,
                                "question": "何時引進？",
                                "answers": [{"text": "2010年", "answer_start": 0}],
                            },
                        ],
                    }
                ],
                "id": "1001",
                "title": "廣州",
            }
        ],
    }
    examples, _ = read_qa(write(tmp_path, document))
    assert examples[0].answers == [("100萬人次", 39)] and examples[1].qid == "10011102"


def test_bad_answer_start_names_the_file_and_question_or_is_skipped_and_counted(tmp_path):
    qas = [
        {"id": "q1", "question": "Who?", "answers": [{"text": "Normans", "answer_start": 4}]},
        {"id": "q2", "question": "Who?", "answers": [{"text": "Normans", "answer_start": 5}]},
    ]
    path = write(tmp_path, squad(("The Normans came.", qas)), "train.json")
    with pytest.raises(BertforgeError) as error:
        read_qa(path)
    message = str(error.value)
    assert message == (
        f"{path}: question q2: answer 0 'Normans' is not at answer_start 5 of the context (found 'ormans ' there)"
    )
    assert "\n" not in message
    examples, report = read_qa(path, skip_bad_lines=True)
    assert [e.qid for e in examples] == ["q1"] and report.records == 2
    assert report.skipped["answer not at answer_start"] == 1 and "question q2" in report.summary()


@pytest.mark.parametrize(
    "qa, reason",
    [
        ({"id": "x", "question": "Q?", "answers": [{"text": "ab", "answer_start": -3}]}, "a negative offset"),
        ({"id": "x", "question": "Q?", "answers": [{"text": "ab", "answer_start": "0"}]}, "expected an integer"),
        ({"id": "x", "question": "Q?", "answers": [{"text": "", "answer_start": 0}]}, "empty text"),
        ({"id": "x", "question": "Q?", "answers": [{"answer_start": 0}]}, r"expected \{'text', 'answer_start'\}"),
        ({"id": "x", "question": "Q?", "answers": {"text": "ab"}}, "answers is dict"),
        ({"id": "x", "question": " ", "answers": []}, "no question text"),
        ({"question": "Q?", "answers": []}, "no question id"),
        ({"id": "x", "question": "Q?", "is_impossible": "no"}, "expected true or false"),
        (
            {"id": "x", "question": "Q?", "is_impossible": True, "answers": [{"text": "ab", "answer_start": 0}]},
            "is_impossible is true but 1 answers are given",
        ),
        ("not a question", "expected a question object"),
    ],
)
def test_bad_questions_are_one_line_errors(tmp_path, qa, reason):
    path = write(tmp_path, squad(("abc", [qa])))
    with pytest.raises(BertforgeError, match=reason) as error:
        read_qa(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
    with pytest.raises(BertforgeError, match=r"no questions left, all 1 were skipped \("):
        read_qa(path, skip_bad_lines=True)


def test_duplicate_ids_and_empty_contexts(tmp_path):
    qa = {"id": "q", "question": "Q?", "answers": [{"text": "b", "answer_start": 1}]}
    path = write(tmp_path, squad(("abc", [qa]), ("abc", [qa]), ("  ", [qa | {"id": "r", "answers": []}])))
    with pytest.raises(BertforgeError, match=r"data\[0\]\.paragraphs\[1\]\.qas\[0\]: .*'q' is already used at data"):
        read_qa(path)
    examples, report = read_qa(path, skip_bad_lines=True)
    assert len(examples) == 1 and report.skipped == {"duplicate id": 1, "empty context": 1}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"data": [', "not valid JSON (Expecting value at line 1 column 11)"),
        ("[]", 'top level: expected an object with a "data" list, found list'),
        ('{"version": "1.1"}', '"data": expected a list of articles, found nothing'),
        ('{"data": [{"title": "x"}]}', "data[0].paragraphs: expected a list of paragraphs, found nothing"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', "data[0].paragraphs[0].context: expected a string"),
        ('{"data": [{"paragraphs": [{"context": "c", "qas": {}}]}]}', "qas: expected a list of questions, found dict"),
        ('{"data": []}', "no questions"),
        ("", "not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "dev.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BertforgeError) as error:
        read_qa(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value) and "\n" not in str(error.value)


def test_not_utf8_bom_and_missing_files(tmp_path):
    (latin := tmp_path / "latin.json").write_bytes('{"data": ["é"]}'.encode("latin-1"))
    with pytest.raises(BertforgeError, match=r"latin\.json: not valid UTF-8"):
        read_qa(latin)
    qa = {"id": "q", "question": "Q?", "answers": [{"text": "b", "answer_start": 1}]}
    (bom := tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(squad(("abc", [qa]))).encode())
    assert read_qa(bom)[0][0].answers == [("b", 1)]
    with pytest.raises(BertforgeError, match="no such file"):
        read_qa(tmp_path / "missing.json")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_answers_round_trip_and_any_shifted_start_is_caught(tmp_path_factory, data):
    context = data.draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=2, max_size=40))
    start = data.draw(st.integers(0, len(context) - 1))
    end = data.draw(st.integers(start + 1, len(context)))
    text = context[start:end]
    if not text.strip():
        return
    shift = data.draw(st.integers(-3, 3))
    qa = {"id": "q", "question": "Q?", "answers": [{"text": text, "answer_start": start + shift}]}
    path = write(tmp_path_factory.mktemp("qa"), squad((context, [qa])))
    if start + shift == -1:  # CLUE's "not given" marker
        assert read_qa(path)[0][0].answers == []
    elif start + shift >= 0 and context[start + shift : start + shift + len(text)] == text:
        assert read_qa(path)[0][0].answers == [(text, start + shift)]
    else:
        with pytest.raises(BertforgeError, match="question q: answer 0"):
            read_qa(path)


def test_split_by_paragraph_keeps_every_context_on_one_side(sample, tmp_path):
    from bertforge.tasks.qa_readers import split_paragraphs

    with zipfile.ZipFile(sample("xglue-mlqa-dummy")) as zf:
        document = json.loads(zf.read(SQUAD_V1))
    train, dev = split_paragraphs(document, 0.8, seed=0)
    a = read_qa(write(tmp_path, train, "train.json"))[0]
    b = read_qa(write(tmp_path, dev, "dev.json"))[0]
    assert len(a) + len(b) == 1027 and len(train["data"]) == 96 and len(dev["data"]) == 25
    assert not {e.context for e in a} & {e.context for e in b}
    assert split_paragraphs(document, 0.8, seed=0) == (train, dev)  # the seed fixes the split
    assert split_paragraphs(document, 0.8, seed=1)[1] != dev
