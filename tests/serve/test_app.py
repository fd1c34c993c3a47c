"""`bertforge serve` over real HTTP: TEI's request and response shapes for classifiers, the NER and QA shapes,
each answer equal to `Predictor.predict` of that input; every bad request gets its documented status and TEI's
error body, and the server keeps serving; limits, the API key, /health, /info, /metrics and /docs."""

import http.client
import json
import math

import pytest

from tests.serve.conftest import API_KEY, QA_NAME, metric

LONG = " ".join(["the film was good"] * 80)  # 320 word-pieces: over the models' 224


def same(got, expected):
    """Equal up to float noise (a text batched with others is padded, which moves scores by ~1e-7)."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for k in expected:
            same(got[k], expected[k])
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            same(a, b)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-5)
    else:
        assert got == expected


def test_classifier_speaks_tei(servers, predictors):
    server, predictor = servers["classification"], predictors["classification"]
    one = server.predict({"inputs": "a fine film"})
    assert [set(r) for r in one] == [{"label", "score"}] * 3 and {r["label"] for r in one} == {"neg", "pos", "neutral"}
    assert [r["score"] for r in one] == sorted((r["score"] for r in one), reverse=True)
    assert sum(r["score"] for r in one) == pytest.approx(1.0)
    same(one, predictor.predict("a fine film"))
    same(server.predict({"inputs": ["a fine film"]}), one)  # [text]: one sequence, as in TEI
    same(server.predict({"inputs": ["a fine film", "a dull plot"]}), predictor.predict(("a fine film", "a dull plot")))
    batch = server.predict({"inputs": [["a fine film"], ["a fine film", "a dull plot"]], "truncate": None})
    same(batch, [one, predictor.predict(("a fine film", "a dull plot"))])

    raw = server.predict({"inputs": "a fine film", "raw_scores": True, "truncation_direction": "Right"})
    assert [r["label"] for r in raw] == [r["label"] for r in one]
    total = sum(math.exp(r["score"]) for r in raw)  # logits: their softmax is the probabilities
    assert [math.exp(r["score"]) / total for r in raw] == pytest.approx([r["score"] for r in one], abs=1e-6)

    too_long = server.call("POST", "/predict", {"inputs": ["a fine film", LONG]})
    assert too_long.status == 422 and too_long.body["error_type"] == "Validation"
    assert "224 tokens" in too_long.body["error"] and '"truncate": true' in too_long.body["error"]
    same(server.predict({"inputs": [["ok"], [LONG]], "truncate": True}), predictor.predict(["ok", LONG]))


def test_regression_is_one_raw_score(servers, predictors):
    server, predictor = servers["regression"], predictors["regression"]
    got = server.predict({"inputs": [["a fine film"], ["a dull plot"]]})
    expected = predictor.predict(["a fine film", "a dull plot"])
    same(got, [[{"label": "LABEL_0", "score": e["score"]}] for e in expected])
    info = server.call("GET", "/info").body
    assert info["regression"] is True and info["labels"] == ["LABEL_0"]


def test_ner_gives_entities_for_text_of_any_length(servers, predictors):
    server, predictor = servers["ner-crf"], predictors["ner-crf"]
    texts = ["Ada Lovelace was born in London.", "Paris and Berlin are cities.", LONG]
    got = server.predict({"inputs": texts})
    same(got, predictor.predict(texts))
    assert any(got) and all(set(e) == {"entity_group", "word", "start", "end", "score"} for r in got for e in r)
    assert all(texts[i][e["start"] : e["end"]] == e["word"] for i, r in enumerate(got) for e in r)
    same(server.predict({"inputs": texts[0]}), got[0])
    info = server.call("GET", "/info").body
    assert info["entity_types"] == ["LOC", "PER"] and "any length" in info["long_inputs"]
    wrong = server.call("POST", "/predict", {"inputs": ["fine", 3]})
    assert (wrong.status, wrong.body["error_type"]) == (422, "Validation") and "'inputs'[1]" in wrong.body["error"]


def test_qa_answers_from_the_passage(servers, predictors):
    server, predictor = servers["qa"], predictors["qa"]
    question = {"question": "Where was Ada born?", "context": "Ada Lovelace was born in London in 1815. " * 30}
    one = server.predict(question)
    assert set(one) == {"answer", "score", "start", "end"} and one["answer"]
    assert question["context"][one["start"] : one["end"]] == one["answer"]
    same(one, predictor.predict(question))
    other = {"question": "When?", "context": "In 1815."}
    same(server.predict([question, other]), [one, predictor.predict(other)])
    for body, status, fragment in (
        ({"question": "Where?"}, 422, "missing field 'context'"),
        ({"question": " ", "context": "x"}, 400, "'question' is an empty text"),
        ({"inputs": question, "parameters": 3}, 422, "'parameters' must be a JSON object"),
        ({"inputs": question, "parameters": {"top_k": 0}}, 422, "'parameters'.top_k must be a positive integer"),
        ("Where?", 422, "not a string"),
        ([question, 1], 422, "item 1 must be a JSON object"),
    ):
        reply = server.call("POST", "/predict", body)
        assert reply.status == status and fragment in reply.body["error"], reply
    assert server.call("GET", "/info").body["version_2_with_negative"] is True


BAD = [  # body -> status, error_type, a fragment of the message
    (b"", 400, "Empty", "the request body is empty"),
    (b"{", 400, "Validation", "not JSON"),  # TEI: 400 for a body that is not JSON, 422 for JSON it cannot use
    (b'{"inputs": "the \xff\xfe film"}', 400, "Validation", "not UTF-8: byte 0xff at offset 16"),
    (b'{"inputs": "\\ud800 half"}', 422, "Validation", "lone surrogate"),
    (b"[" * 100_000, 400, "Validation", "nested too deeply"),
    (b"[1]", 422, "Validation", "must be a JSON object, not a list"),
    (b'{"input": "x"}', 422, "Validation", "missing field 'inputs'"),  # an unknown field is ignored, as in TEI
    (b'{"truncate": true}', 422, "Validation", "missing field 'inputs'"),
    (b'{"inputs": 5}', 422, "Validation", "not a number"),
    (b'{"inputs": "a", "truncate": "yes"}', 422, "Validation", "'truncate' must be true or false"),
    (b'{"inputs": "a", "truncation_direction": "Up"}', 422, "Validation", 'expected "Right" or "Left"'),
    (b'{"inputs": ["a", "b", "c"]}', 422, "Validation", "[text] or [text, text_b], not a list of 3"),
    (b'{"inputs": [["a"], "b"]}', 422, "Validation", "'inputs'[1] must be [text] or [text, text_b]"),
    (b'{"inputs": ""}', 400, "Empty", "'inputs' is an empty text"),
    (b'{"inputs": [["ok"], [" \\n"]]}', 400, "Empty", "'inputs'[1][0] is an empty text"),
    (b'{"inputs": []}', 422, "Validation", "the batch is empty"),
    (json.dumps({"inputs": [["a"]] * 9}).encode(), 413, "Validation", "batch size 9 > maximum allowed batch size 8"),
    (json.dumps({"inputs": [["a"]] * 10_000}).encode(), 413, "Validation", "batch size 10000 > maximum"),
]


@pytest.mark.parametrize("body, status, error_type, fragment", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_get_their_status_and_teis_error_body(servers, body, status, error_type, fragment):
    server = servers["classification"]
    reply = server.call("POST", "/predict", raw=body)
    assert (reply.status, set(reply.body)) == (status, {"error", "error_type"}), reply
    assert reply.body["error_type"] == error_type and fragment in reply.body["error"], reply.body
    assert server.call("GET", "/health").status == 200


def test_a_large_body_is_refused_before_it_is_read_and_the_server_goes_on(servers):
    server = servers["classification"]
    ten_mb = json.dumps({"inputs": "a" * 10_000_000}).encode()
    reply = server.call("POST", "/predict", raw=ten_mb)
    assert reply.status == 413 and reply.body["error"].startswith(f"request body of {len(ten_mb)} bytes exceeds")

    host, port = server.url.removeprefix("http://").rsplit(":", 1)  # no Content-Length: counted as it comes
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (ten_mb[i : i + 65536] for i in range(0, len(ten_mb), 65536))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connection.request("POST", "/predict", body=chunks, headers=headers, encode_chunked=True)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "request body of more than" in body["error"], body

    # Just over the limit, announced honestly: refused from the header alone, before any byte of it is read.
    over = server.call("POST", "/predict", raw=b"x" * 2_000_001)
    assert over.status == 413 and "2000001 bytes" in over.body["error"]
    assert server.predict({"inputs": "still serving"})


def test_api_key_guards_every_route_but_health_metrics_and_the_static_pages(servers):
    server = servers["classification"]
    for method, path in (("POST", "/predict"), ("POST", "/"), ("POST", "/invocations"), ("GET", "/info")):
        for key in (None, "wrong"):
            reply = server.call(method, path, {"inputs": "x"} if method == "POST" else None, key=key)
            assert reply.status == 401 and reply.body["error_type"] == "Unauthorized", (path, key, reply)
            assert reply.headers["www-authenticate"] == "Bearer"
    for path in ("/health", "/ping", "/metrics", "/", "/docs", "/openapi.json"):  # /metrics: TEI's, for scrapers
        assert server.call("GET", path, key=None).status == 200, path
    spec = server.call("GET", "/openapi.json", key=None).body
    predict = spec["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["required"] == ["inputs"]
    assert {"401", "413", "422", "429"} <= set(predict["responses"]) and "security" in predict
    docs = server.call("GET", "/docs", key=None).body
    assert "openapi.json" in docs and "https://" not in docs  # the page, with nothing from a CDN


def test_health_info_and_unknown_routes(servers, folders):
    server = servers["classification"]
    assert server.call("GET", "/health").body == {"status": "ok"}
    info = server.call("GET", "/info").body
    assert info["model_id"] == folders["classification"].name and info["task"] == "classification"
    assert info["labels"] == ["neg", "pos", "neutral"] and info["regression"] is False
    assert info["max_input_length"] == 224 and "refused (422)" in info["long_inputs"]
    assert info["backend"] == "torch" and info["version"] and info["batching"] is True
    assert (info["max_client_batch_size"], info["max_wait_ms"], info["max_body_bytes"]) == (8, 50, 2_000_000)
    assert server.call("GET", "/nowhere").body == {"error": "Not Found", "error_type": "NotFound"}
    wrong_method = server.call("GET", "/predict")
    assert (wrong_method.status, wrong_method.body["error_type"]) == (405, "MethodNotAllowed")


def test_the_pages_without_a_key_name_the_model_never_its_path(servers, folders):
    """/openapi.json and the /docs page it feeds need no API key: they show the model's name (the folder's base
    name, or --served-model-name), never where it lies on the server's disk."""
    for name, shown in (("classification", folders["classification"].name), ("qa", QA_NAME)):
        server = servers[name]
        spec = server.call("GET", "/openapi.json", key=None)
        assert spec.status == 200 and f"model ({shown})" in spec.body["info"]["description"], spec.body["info"]
        text = json.dumps(spec.body) + server.call("GET", "/docs", key=None).body
        assert str(folders[name].parent) not in text and str(folders[name].resolve().parent) not in text
        assert server.call("GET", "/info").body["model_id"] == shown


def test_metrics_count_requests_latency_batches_and_tokens(servers):
    server = servers["ner-crf"]
    before = server.metrics()
    server.predict({"inputs": ["Ada was born in London.", "Paris."]})
    server.call("POST", "/predict", {"inputs": 1})
    after = server.metrics()

    def grew(name, by, **labels):
        assert metric(after, name, **labels) - metric(before, name, **labels) == by, (name, labels)

    grew("bertforge_requests_total", 1, route="/predict", status="200")
    grew("bertforge_requests_total", 1, route="/predict", status="422")
    grew("bertforge_request_duration_seconds_count", 2, route="/predict")
    grew("bertforge_batch_size_count", 1)
    grew("bertforge_batch_size_sum", 2)  # both texts in one forward pass
    assert metric(after, "bertforge_tokens_total") > metric(before, "bertforge_tokens_total") >= 0
    for name in ("bertforge_queue_size", "bertforge_requests_in_flight", "bertforge_forward_seconds_count"):
        assert f"\n{name}" in after, name
