"""The demo page at `/` in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium): for each task it shows the right boxes, and after typing and clicking, the labels with score bars,
the entities highlighted in the text, or the answer highlighted in the passage, as /predict gives them; an
API key is asked for when the server wants one; nothing is fetched from anywhere but the server. Each test
saves a screenshot and prints its path. Without Chromium these tests fail where samples are required
(`make test`, CI) and skip, listed in the summary, elsewhere."""

import json
import shutil

import pytest

from tests.conftest import samples_required
from tests.serve.conftest import API_KEY


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not (chromium and driver):
        why = (
            "the browser test needs selenium and Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver)"
        )
        if samples_required():
            pytest.fail(f"{why}; they are required here (BERTFORGE_REQUIRE_SAMPLES / CI)", pytrace=False)
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.implicitly_wait(0)
    yield session
    session.quit()


def wait_for(browser, css: str, count: int = 1, timeout: float = 15):
    """The elements matching `css`, once there are at least `count` of them and the first is visible."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(driver):
        elements = driver.find_elements(By.CSS_SELECTOR, css)
        return elements if len(elements) >= count and elements[0].is_displayed() else False

    return WebDriverWait(browser, timeout).until(found, f"no {css} on the page")


def fill(browser, css: str, text: str) -> None:
    box = wait_for(browser, css)[0]
    box.clear()
    box.send_keys(text)


def finish(browser, server, name: str, shots, refused: int | None = None) -> None:
    """The screenshot, and what the page loaded and logged: all from the server, and no errors but the HTTP
    status `refused` of a request the test meant to fail."""
    path = shots / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(server.url + "/") for url in loaded), loaded
    expected = f"the server responded with a status of {refused}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and expected not in e["message"]]
    assert not errors, errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def test_classifier_page_asks_for_the_key_then_shows_labels_with_bars(browser, servers, shots):
    server, text, text_b = servers["classification"], "a wonderful, moving film", "a dull plot"
    browser.get(server.url + "/")
    fill(browser, "#api-key", API_KEY)
    wait_for(browser, "#connect")[0].click()
    fill(browser, "#text", text)
    fill(browser, "#text_b", text_b)  # the folder says the model was trained on pairs: the second box is there
    wait_for(browser, "#predict")[0].click()
    rows = wait_for(browser, "#labels .row", count=3)
    expected = server.predict({"inputs": [text, text_b]})
    assert [row.find_element("css selector", ".name").text for row in rows] == [r["label"] for r in expected]
    assert [row.find_element("css selector", ".score").text for row in rows] == [f"{r['score']:.3f}" for r in expected]
    widths = [row.find_element("css selector", ".bar > div").get_attribute("style") for row in rows]
    assert widths[0] == f"width: {100 * expected[0]['score']:.1f}%;", widths
    finish(browser, server, "classification", shots, refused=401)  # /info before the key was given


def test_regression_page_shows_the_score(browser, servers, shots):
    server, text = servers["regression"], "a wonderful, moving film"
    browser.get(server.url + "/")
    fill(browser, "#text", text)
    assert not browser.find_elements("css selector", "#text_b")  # trained on single texts: no second box
    wait_for(browser, "#predict")[0].click()
    (row,) = wait_for(browser, "#labels .row")
    assert row.find_element("css selector", ".name").text == "score"
    assert row.find_element("css selector", ".score").text == f"{server.predict({'inputs': text})[0]['score']:.4f}"
    assert not browser.find_element("css selector", "#truncated").is_displayed()
    finish(browser, server, "regression", shots)


def test_a_truncated_input_is_said_so(browser, servers, shots):
    server = servers["regression"]
    text = " ".join(["the film was good"] * 80)  # 320 word-pieces, over the model's 224
    browser.get(server.url + "/")
    fill(browser, "#text", text)
    wait_for(browser, "#predict")[0].click()
    (row,) = wait_for(browser, "#labels .row")
    expected = server.predict({"inputs": text, "truncate": True})[0]["score"]
    assert row.find_element("css selector", ".score").text == f"{expected:.4f}"
    note = wait_for(browser, "#truncated")[0].text
    assert "longer than the model takes (224 tokens)" in note, note
    finish(browser, server, "truncated", shots)


def test_ner_page_highlights_entities_with_their_types(browser, servers, shots):
    server = servers["ner-crf"]
    text = next(t for t in ("Ada Lovelace was born in London.", "Paris and Berlin are cities.")
                if server.predict({"inputs": t}))  # fmt: skip
    entities = server.predict({"inputs": text})
    from selenium.webdriver.common.keys import Keys

    browser.get(server.url + "/")
    assert not wait_for(browser, "#text")[0].get_attribute("value")
    assert not browser.find_elements("css selector", "#text_b")  # pairs are for classifiers trained on them
    fill(browser, "#text", "first line")
    wait_for(browser, "#text")[0].send_keys(Keys.SHIFT, Keys.ENTER)  # a new line, not a request
    assert wait_for(browser, "#text")[0].get_attribute("value") == "first line\n"
    assert not browser.find_element("css selector", "#result").text
    fill(browser, "#text", text)
    wait_for(browser, "#text")[0].send_keys(Keys.ENTER)  # Enter predicts
    marks = wait_for(browser, "#result mark.entity", count=len(entities))
    assert [m.get_attribute("data-type") for m in marks] == [e["entity_group"] for e in entities]
    assert [m.find_element("css selector", ".type").text for m in marks] == [e["entity_group"] for e in entities]
    words = [browser.execute_script("return arguments[0].firstChild.textContent", m) for m in marks]
    assert words == [e["word"] for e in entities]
    passage = wait_for(browser, "#result .passage")[0]
    untagged = "const p = arguments[0].cloneNode(true); p.querySelectorAll('.type').forEach(t => t.remove()); "
    assert browser.execute_script(untagged + "return p.textContent", passage) == text  # the text, all of it
    finish(browser, server, "ner", shots)


def test_qa_page_highlights_the_answer_in_the_passage(browser, servers, shots):
    server = servers["qa"]
    body = {"question": "Where was Ada born?", "context": "Ada Lovelace was born in London in 1815."}
    expected = server.predict(body)
    browser.get(server.url + "/")
    wait_for(browser, "#question")
    assert not browser.find_elements("css selector", "#text")  # the form is the task's: question and context
    fill(browser, "#question", body["question"])
    fill(browser, "#context", body["context"])
    wait_for(browser, "#predict")[0].click()
    (mark,) = wait_for(browser, "#result mark.answer")
    assert mark.text == expected["answer"] == body["context"][expected["start"] : expected["end"]]
    assert browser.find_element("css selector", "#answer").text == expected["answer"]
    finish(browser, server, "qa", shots)


def test_a_renderer_the_page_does_not_know_shows_json(browser, servers, shots):
    server = servers["ner-crf"]
    browser.get(server.url + "/")
    fill(browser, "#text", "Paris and Berlin are cities.")
    browser.execute_script("info.form.result = 'a-new-task'")  # as /info of a task the page was not written for
    wait_for(browser, "#predict")[0].click()
    shown = wait_for(browser, "#result #json")[0].text
    assert json.loads(shown) == server.predict({"inputs": "Paris and Berlin are cities.", "truncate": True})
    finish(browser, server, "json", shots)


def test_an_error_is_shown_not_thrown(browser, servers, shots):
    server = servers["ner-crf"]
    browser.get(server.url + "/")
    fill(browser, "#text", "   ")
    wait_for(browser, "#predict")[0].click()
    assert "empty text" in wait_for(browser, "#error:not(:empty)")[0].text
    assert not browser.find_element("css selector", "#result").text
    finish(browser, server, "error", shots, refused=400)


def test_docs_page_shows_every_route_from_the_openapi_document_without_the_network(browser, servers, shots):
    server = servers["qa"]
    browser.get(server.url + "/docs")
    spec = server.call("GET", "/openapi.json").body
    expected = [f"{method.upper()}{path}" for path, methods in spec["paths"].items() for method in methods]
    headings = wait_for(browser, ".route h2", count=len(expected))
    assert [h.text.replace(" ", "").replace("\n", "") for h in headings] == expected
    predict = next(h for h in headings if "/predict" in h.text).find_element("xpath", "..")
    shown = predict.text
    assert '"question"' in shown and '"context"' in shown  # the request schema, its references resolved
    assert all(status in shown for status in ("413", "422", "429")), shown
    assert browser.find_element("css selector", "#title").text.startswith(spec["info"]["title"])
    assert not browser.find_element("css selector", "#error").text
    finish(browser, server, "docs", shots)
