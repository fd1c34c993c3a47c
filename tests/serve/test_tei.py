"""`bertforge serve` with clients nobody here wrote: Hugging Face's `InferenceClient` pointed at the server's base
URL, as at a TEI server or an Inference Endpoint (each answer equal to `Predictor.predict` of the same input),
TEI's routes (`/`, `/invocations`, `/ping`, HEAD), CORS as a browser sends it, TEI's `error_type` names, its
timing headers and /info fields, and /metrics read by prometheus_client's own parser without a key."""

import dataclasses
import json
import math

import pytest
from fastapi.testclient import TestClient
from huggingface_hub import InferenceClient
from prometheus_client.parser import text_string_to_metric_families

from bertforge.serve import ServeOptions, create_app
from bertforge.serve.errors import TEI_TYPES
from tests.serve.conftest import API_KEY
from tests.serve.test_app import LONG, same

QUESTION = {"question": "Where was Ada born?", "context": "Ada Lovelace was born in London in 1815. " * 30}


def plain(element) -> dict:
    """An InferenceClient result as the JSON it was read from (its fields the server did not send are None)."""
    return {k: v for k, v in dataclasses.asdict(element).items() if v is not None}


def client(server) -> InferenceClient:
    return InferenceClient(model=server.url, token=server.key, timeout=60)


def test_inference_client_text_classification(servers, predictors):
    server, predictor = servers["classification"], predictors["classification"]
    expected = predictor.predict("a fine film")
    got = client(server).text_classification("a fine film")
    same([plain(e) for e in got], expected)
    top = client(server).text_classification("a fine film", top_k=2)
    same([plain(e) for e in top], expected[:2])
    # function_to_apply "none": the logits, in the probabilities' order; their softmax is the probabilities
    logits = client(server).text_classification("a fine film", function_to_apply="none")
    assert [e.label for e in logits] == [e["label"] for e in expected]
    total = sum(math.exp(e.score) for e in logits)
    assert [math.exp(e.score) / total for e in logits] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_inference_client_token_classification(servers, predictors):
    server, predictor = servers["ner-crf"], predictors["ner-crf"]
    texts = ["Ada Lovelace was born in London.", "Paris and Berlin are cities.", LONG]
    found = False
    for text in texts:
        expected = predictor.predict(text)
        got = [plain(e) for e in client(server).token_classification(text)]
        same(got, expected)
        found = found or bool(expected)
        kept = {e["entity_group"] for e in expected}
        if kept:  # ignore_labels leaves out those types, as the pipeline's parameter does
            dropped = sorted(kept)[0]
            rest = client(server).token_classification(text, ignore_labels=[dropped])
            same([plain(e) for e in rest], [e for e in expected if e["entity_group"] != dropped])
    assert found, "the tiny tagger found no entity in any text: the test compares nothing"
    refused = server.call("POST", "/", {"inputs": "x", "parameters": {"aggregation_strategy": "none"}})
    assert (refused.status, refused.body["error_type"]) == (422, "Validation") and "simple" in refused.body["error"]


def test_inference_client_question_answering(servers, predictors):
    server, predictor = servers["qa"], predictors["qa"]
    got = client(server).question_answering(**QUESTION)
    same(plain(got), predictor.predict(QUESTION))
    assert QUESTION["context"][got.start : got.end] == got.answer

    # top_k: the n-best spans, most probable first (no "no answer" when handle_impossible_answer is false)
    (example,) = [predictor.example(QUESTION, "0")]
    ((_, result),) = predictor.predict_examples([example])
    spans = [{"answer": c["text"], "score": c["probability"], "start": c["start"], "end": c["end"]}
             for c in result.nbest]  # fmt: skip
    three = client(server).question_answering(**QUESTION, top_k=3, handle_impossible_answer=False)
    same([plain(a) for a in three], spans[:3])
    assert [a.score for a in three] == sorted((a.score for a in three), reverse=True)
    assert all(QUESTION["context"][a.start : a.end] == a.answer for a in three)


def test_every_tei_predict_route_answers_alike(servers):
    server = servers["classification"]
    body = {"inputs": [["a fine film"], ["a fine film", "a dull plot"]], "ignored_by_tei": 1}
    answers = {path: server.call("POST", path, body) for path in ("/", "/predict", "/invocations")}
    assert {path: reply.status for path, reply in answers.items()} == dict.fromkeys(answers, 200)
    same(answers["/"].body, answers["/predict"].body)
    same(answers["/invocations"].body, answers["/predict"].body)
    assert server.call("GET", "/ping").body == {"status": "ok"}


def test_head_answers_every_get_route_with_headers_only(servers):
    server = servers["classification"]
    for path in ("/", "/health", "/ping", "/info", "/metrics", "/docs"):
        got = server.call("HEAD", path)
        assert got.status == 200 and got.body == "" and int(got.headers["content-length"]) > 0, (path, got)


def test_cors_preflight_and_allow_on_a_wrong_method(servers):
    server = servers["classification"]
    origin = {"Origin": "https://app.example"}
    asking = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    preflight = server.call("OPTIONS", "/predict", key=None, headers=origin | asking)
    assert preflight.status == 200, preflight
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert {"POST"} <= set(preflight.headers["access-control-allow-methods"].replace(" ", "").split(","))
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    answered = server.call("POST", "/predict", {"inputs": "a fine film"}, headers=origin)
    assert answered.status == 200 and answered.headers["access-control-allow-origin"] == "*"
    assert "x-compute-time" in answered.headers["access-control-expose-headers"]

    plain = server.call("OPTIONS", "/predict")  # not a preflight: the method is wrong, and Allow says which is right
    assert (plain.status, plain.body["error_type"], plain.headers["allow"]) == (405, "MethodNotAllowed", "POST")
    assert set(server.call("DELETE", "/info").headers["allow"].split(", ")) == {"GET", "HEAD"}


@pytest.mark.parametrize(
    "raw, status, error_type",
    [
        (b"", 400, "Empty"),
        (b'{"inputs": " "}', 400, "Empty"),
        (b"{", 400, "Validation"),
        (b'{"inputs": []}', 422, "Validation"),
        (b'{"inputs": 3}', 422, "Validation"),
        (b'{"inputs": "' + LONG.encode() + b'", "truncate": false}', 422, "Validation"),
        (b'{"inputs": [' + b",".join([b'["a"]'] * 9) + b"]}", 413, "Validation"),
    ],
)
def test_errors_carry_teis_error_type_names(servers, raw, status, error_type):
    reply = servers["classification"].call("POST", "/", raw=raw)
    assert (reply.status, reply.body["error_type"]) == (status, error_type), reply
    assert reply.body["error_type"] in TEI_TYPES


def test_timing_headers_and_truncation_count(servers):
    server = servers["classification"]
    reply = server.call("POST", "/predict", {"inputs": [["ok"], [LONG]], "truncate": True})
    assert reply.status == 200
    times = {name: int(reply.headers[name]) for name in ("x-compute-time", "x-total-time", "x-tokenization-time",
                                                         "x-queue-time", "x-inference-time")}  # fmt: skip
    assert all(value >= 0 for value in times.values()), times
    assert reply.headers["x-compute-type"] == "cpu"
    assert int(reply.headers["x-compute-tokens"]) == 3 + 224  # [CLS] ok [SEP], and LONG cut to the 224 positions
    assert reply.headers["x-truncated-inputs"] == "1"
    assert int(reply.headers["x-compute-characters"]) == len("ok") + len(LONG)


def test_truncation_direction_left_keeps_the_end(servers, predictors):
    server, predictor = servers["classification"], predictors["classification"]
    tokenizer = predictor.tokenizer
    words = "the plot was dull but the ending moved me".split()
    end = []
    while len(tokenizer.tokenize(" ".join(end))) < 222:  # the end that fits: 224 positions less [CLS], [SEP]
        end.insert(0, words[len(end) % len(words)])
    assert len(tokenizer.tokenize(" ".join(end))) == 222  # one word-piece per word: the cut falls between words
    text = "a wonderful film " * 40 + " ".join(end)
    for direction in ("Left", "left"):
        got = server.predict({"inputs": text, "truncate": True, "truncation_direction": direction})
        same(got, predictor.predict(" ".join(end)))
    same(server.predict({"inputs": text, "truncate": True}), predictor.predict(text))  # Right: the start


def test_info_has_teis_fields(servers, folders):
    info = servers["classification"].call("GET", "/info").body
    labels = ["neg", "pos", "neutral"]
    assert info["model_type"] == {"classifier": {"id2label": {"0": "neg", "1": "pos", "2": "neutral"},
                                                 "label2id": {name: i for i, name in enumerate(labels)}}}  # fmt: skip
    assert info["model_dtype"] == "float32" and info["served_model_name"] == folders["classification"].name
    assert (info["auto_truncate"], info["max_batch_requests"], info["max_batch_tokens"]) == (False, 16, 16384)
    assert servers["regression"].call("GET", "/info").body["model_type"] == {
        "classifier": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    }


def test_metrics_open_to_a_scraper_and_parsed_by_prometheus_client(servers):
    server = servers["classification"]  # the one with an API key
    server.call("POST", "/", {"inputs": "a fine film"})
    reply = server.call("GET", "/metrics", key=None)
    assert reply.status == 200
    families = {family.name: family for family in text_string_to_metric_families(reply.body)}
    requests = families["bertforge_requests"]
    served = [s for s in requests.samples if s.name == "bertforge_requests_total" and s.labels["route"] == "/"]
    assert served and sum(s.value for s in served if s.labels["status"] == "200") >= 1
    assert "bertforge_request_duration_seconds" in families


def test_flags_auto_truncate_cors_origins_and_a_locked_metrics_page(predictors):
    options = ServeOptions(auto_truncate=True, cors_allow_origin=("https://app.example",), metrics_need_key=True,
                           api_key=API_KEY)  # fmt: skip
    key = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(predictors["classification"], options, model_id="m")) as http:
        cut = http.post("/", json={"inputs": LONG}, headers=key)  # no "truncate": the server's --auto-truncate
        assert cut.status_code == 200 and cut.headers["x-truncated-inputs"] == "1"
        same(cut.json(), predictors["classification"].predict(LONG))
        refused = http.post("/", json={"inputs": LONG, "truncate": False}, headers=key)  # the request's own word
        assert (refused.status_code, refused.json()["error_type"]) == (422, "Validation")
        assert http.get("/info", headers=key).json()["auto_truncate"] is True
        assert http.get("/metrics").status_code == 401 and http.get("/metrics", headers=key).status_code == 200
        allowed = http.post("/", json={"inputs": "x"}, headers=key | {"Origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = http.post("/", json={"inputs": "x"}, headers=key | {"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def conforms(value, schema: dict) -> bool:
    """`value` against the JSON Schema subset the OpenAPI document uses (type, required, properties, items,
    oneOf): a checker of our own, not the server's."""
    if "oneOf" in schema:
        return sum(conforms(value, option) for option in schema["oneOf"]) >= 1
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    if "type" in schema and not isinstance(value, kinds[schema["type"]]):
        return False
    if isinstance(value, dict):
        return set(schema.get("required", ())) <= set(value) and all(
            conforms(value[k], s) for k, s in schema.get("properties", {}).items() if k in value
        )
    if isinstance(value, list) and "items" in schema:
        return all(conforms(item, schema["items"]) for item in value)
    return True


def test_openapi_documents_the_served_task_only(servers):
    cases = {  # server -> a request, and words only the other tasks' shapes have
        "classification": ({"inputs": [["a fine film"], ["a fine film", "a dull plot"]]}, ("entity_group", "context")),
        "ner-crf": ({"inputs": ["Ada Lovelace was born in London.", "Paris."]}, ("raw_scores", "context")),
        "qa": ([QUESTION, {"question": "When?", "context": "In 1815."}], ("entity_group", "raw_scores")),
    }
    for name, (request, foreign) in cases.items():
        server = servers[name]
        spec = server.call("GET", "/openapi.json", key=None).body
        for path in ("/", "/predict", "/invocations"):
            operation = spec["paths"][path]["post"]
            ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert ok != {} and conforms(server.predict(request), ok), (name, ok)
            assert conforms(server.predict(request[0] if name == "qa" else {"inputs": "x"}), ok)
            assert not conforms({"unexpected": 1}, ok)
            assert ("401" in operation["responses"]) == (server.key is not None), (name, path)
        text = json.dumps({k: v for k, v in spec.items() if k != "components"})
        assert not [word for word in foreign if word in text], (name, foreign)
        description = spec["info"]["description"] + spec["paths"]["/predict"]["post"]["description"]
        assert not any(mark in description for mark in ("`", "**", "\n#", "](")), description  # no Markdown
