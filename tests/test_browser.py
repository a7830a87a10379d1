"""What a user sees in MLflow's UI after a search, in a real browser: a real `mlflow server` on the search's own
store (127.0.0.1, a free port) driven by headless Chromium through Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); Selenium is given both paths, so
it downloads nothing.
"""

from __future__ import annotations

import io
import os
import re
import shutil

import pytest
from servers import MlflowServer, free_port

from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.front import yardstick
from search.front.summary import artifact_link, front_view_key, run_link, runs_link, verdict, view_link
from search.record.tracking import Tracker

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WAIT = 120  # seconds a page may take to show what is awaited (the UI's first load on a busy 2-core machine)
TRIAL_ID = re.compile(r"^[0-9a-f]{8}$")


@pytest.fixture(scope="module")
def finished(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    spec = parse_spec({
        "name": "ui", "data": {"name": "gunpoint"}, "baselines": ["nn_euclidean"],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True},
                       {"metric": "flops", "mode": "min", "reference": 1e9, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [8, 16, 32],
                  "heads": [1, 2], "patch_len": [10, 25]},
        "training": {"epochs": 1, "batch_size": 16},
        "search": {"sampler": "random", "trials": 5, "concurrency": 2, "seed": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "ui"}})
    home = os.getcwd()
    os.chdir(tmp)  # the baselines' cache lands here, not in the checkout
    try:
        result = run_search(spec, name="ui-run", out=io.StringIO())
    finally:
        os.chdir(home)
    assert result.status == "complete" and result.front.members
    return spec, result, Tracker(spec.tracking.uri, "ui"), tmp


@pytest.fixture(scope="module")
def ui(finished):
    spec, _, _, tmp = finished
    server = MlflowServer(tmp, free_port(), backend=spec.tracking.uri)
    server.start()
    yield f"http://127.0.0.1:{server.port}/"
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, condition, what: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # an element read while the page re-renders is stale: look again
    return WebDriverWait(driver, WAIT, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(condition, message=f"not shown: {what}")


def trial_links(driver) -> dict[str, str]:
    """Links whose text is a bare trial id -> the run id they open."""
    from selenium.webdriver.common.by import By

    out = {}
    for a in driver.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']"):
        text, href = a.text.strip(), a.get_attribute("href") or ""
        if TRIAL_ID.match(text):
            out[text] = re.search(r"/runs/([0-9a-f]{32})", href).group(1)
    return out


def header_columns(driver) -> list[str]:
    """The runs table's column ids, left to right."""
    from selenium.webdriver.common.by import By

    return [c.get_attribute("col-id") for c in driver.find_elements(By.CSS_SELECTOR,
                                                                      ".ag-header-row-column .ag-header-cell")]


def test_description_starts_with_the_verdict_readable_folded(finished, ui, browser):
    from selenium.webdriver.common.by import By

    _, result, tracker, _ = finished
    state = tracker.search_state(result.parent_run_id, finished[0].objectives)
    expected = verdict(yardstick.best_by_validation(state.finished.values()), tracker.baselines(result.parent_run_id))
    assert expected.startswith("Best ") and " vs 1-NN Euclidean " in expected
    browser.get(ui + run_link(tracker.experiment_id, result.parent_run_id))
    first = wait_for(browser, lambda d: d.find_elements(By.XPATH, f"//p[normalize-space()='{expected}']"),
                     f"the verdict {expected!r}")[0]
    # MLflow folds a description to its first 100 px and fades their lower 60: the verdict is in the clear part
    fold = browser.execute_script(
        "let e = arguments[0]; while (e && getComputedStyle(e).maxHeight !== '100px') e = e.parentElement; "
        "return e && e.getBoundingClientRect().top;", first)
    assert fold is not None, "the description is not folded"
    assert first.rect["y"] + first.rect["height"] - fold <= 40


def test_experiment_opened_by_hand_leads_to_its_searches(finished, ui, browser):
    from selenium.webdriver.common.by import By

    _, result, tracker, _ = finished
    browser.get(ui + f"#/experiments/{tracker.experiment_id}")  # no workflowType: MLflow picks GenAI pages
    link = wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, "open them in the Model training view"),
                    "the experiment's description with the link to its searches")[0]
    home = browser.current_window_handle
    browser.execute_script("arguments[0].click()", link)  # GenAI pages may open a pop-up over it
    # MLflow opens a description's links in a new tab
    tab = wait_for(browser, lambda d: [h for h in d.window_handles if h != home], "the link's new tab")[0]
    browser.switch_to.window(tab)
    try:
        def described(d) -> bool:
            columns = header_columns(d)
            return "attributes.`Description`" in columns and "metrics.`hypervolume`" in columns and \
                columns.index("attributes.`Description`") + 1 == columns.index("metrics.`hypervolume`")

        wait_for(browser, described, "the searches' view: their descriptions, then their hypervolumes")
        assert "workflowType=machine_learning" in browser.current_url
        wait_for(browser, lambda d: any(c.text.startswith("Best ") for c in d.find_elements(By.CSS_SELECTOR,
                                                                                             ".ag-cell")),
                 "the search's verdict in its Description cell")
    finally:
        browser.close()
        browser.switch_to.window(home)


def test_front_view_shows_the_objectives_in_their_order(finished, ui, browser):
    spec, result, tracker, _ = finished
    browser.get(ui + view_link(tracker.experiment_id, front_view_key(result.parent_run_id)))
    expected = [f"metrics.`{o.metric}`" for o in spec.objectives] + ["metrics.`test_accuracy`"]

    def in_order(d) -> bool:  # the objectives first among the metrics, in the spec's order
        columns = [c for c in header_columns(d) if c.startswith("metrics.")]
        return columns[:len(expected)] == expected

    wait_for(browser, in_order, f"the front's view with the columns {expected}")
    front = {r.trial_id for r in result.front.members}
    wait_for(browser, lambda d: {t.split(" ")[0] for t in shown_run_names(d)} == front,
             f"exactly the front's {len(front)} runs")


def shown_run_names(driver) -> set[str]:
    from selenium.webdriver.common.by import By

    return {a.text.strip() for a in driver.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']")
            if TRIAL_ID.match(a.text.strip().split(" ")[0])}


def test_csv_preview_shows_the_knee_as_yes_or_no(finished, ui, browser):
    import urllib.request

    from selenium.webdriver.common.by import By

    _, result, tracker, _ = finished
    served = urllib.request.urlopen(f"{ui}get-artifact?path=pareto.csv&run_uuid={result.parent_run_id}",
                                    timeout=30).read().decode()
    header, *rows = served.splitlines()
    knee = header.split(",").index("knee")
    assert sorted(r.split(",")[knee] for r in rows) == ["no"] * (len(rows) - 1) + ["yes"]
    browser.get(ui + f"#/experiments/{tracker.experiment_id}/runs/{result.parent_run_id}/artifacts/pareto.csv")

    def text(elements) -> list[str]:
        return [e.get_attribute("textContent").strip() for e in elements]

    wait_for(browser, lambda d: "knee" in text(d.find_elements(By.CSS_SELECTOR, "th")), "the CSV preview")
    column = text(browser.find_elements(By.CSS_SELECTOR, "th")).index("knee")
    shown = [text(row.find_elements(By.TAG_NAME, "td"))
             for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr:not([aria-hidden='true'])")]
    # true/false would be blank cells there (the preview types every cell)
    assert sorted(row[column] for row in shown) == sorted(r.split(",")[knee] for r in rows)


def test_description_shows_the_front_with_links_to_its_runs(finished, ui, browser):
    from selenium.webdriver.common.by import By

    _, result, tracker, _ = finished
    browser.get(ui + run_link(tracker.experiment_id, result.parent_run_id))
    more = wait_for(browser, lambda d: d.find_elements(By.XPATH, "//*[text()='Show more']"), "the description")
    more[0].click()  # MLflow folds long descriptions
    expected = {r.trial_id: r.run_id for r in result.front.members}
    wait_for(browser, lambda d: trial_links(d) == expected, f"links to the front members {expected}")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert f"{result.front.knee.trial_id} (knee)" in text
    assert "Hypervolume" in text and "reference point" in text and "1-NN Euclidean" in text
    assert "Dataset" in text or "gunpoint" in text  # the dataset input on the run page


def test_interactive_front_renders_in_the_artifact_viewer(finished, ui, browser):
    from selenium.webdriver.common.by import By

    _, result, tracker, _ = finished
    link = artifact_link(tracker.experiment_id, result.parent_run_id, "pareto.html")
    assert f"]({link})" in tracker.run(result.parent_run_id).data.tags["mlflow.note.content"]  # the description's
    browser.get(ui + link)
    frame = wait_for(browser, lambda d: d.find_elements(By.TAG_NAME, "iframe"), "the HTML preview")[0]
    browser.switch_to.frame(frame)
    try:
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= 2,
                 "both Plotly figures")
        labels = {t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "svg text")}
        assert {r.trial_id for r in result.front.members} <= labels  # the front's points carry their trial ids
        assert browser.find_elements(By.CSS_SELECTOR, "g.parcoords")  # the parallel-coordinates view
    finally:
        browser.switch_to.default_content()


def test_front_link_lists_exactly_the_front_members(finished, ui, browser):
    spec, result, tracker, _ = finished
    browser.get(ui + runs_link(tracker.experiment_id, result.parent_run_id, spec.objectives))
    front = {r.run_id for r in result.front.members}

    def listed(d) -> set[str]:
        from selenium.webdriver.common.by import By

        ids = set()
        for a in d.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']"):
            if TRIAL_ID.match(a.text.strip().split(" ")[0]):  # run names start with the trial id
                ids.add(re.search(r"/runs/([0-9a-f]{32})", a.get_attribute("href")).group(1))
        return ids

    wait_for(browser, lambda d: listed(d) == front, f"the runs table with exactly the front's {len(front)} runs")
    assert "matching runs" in browser.page_source
