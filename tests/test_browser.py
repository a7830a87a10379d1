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

from search.runner import run_search
from search.spec_checks import parse_spec
from search.summary import run_link, runs_link
from search.tracking import Tracker

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
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.5).until(condition, message=f"not shown: {what}")


def trial_links(driver) -> dict[str, str]:
    """Links whose text is a bare trial id -> the run id they open."""
    from selenium.webdriver.common.by import By

    out = {}
    for a in driver.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']"):
        text, href = a.text.strip(), a.get_attribute("href") or ""
        if TRIAL_ID.match(text):
            out[text] = re.search(r"/runs/([0-9a-f]{32})", href).group(1)
    return out


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
    browser.get(ui + f"#/experiments/{tracker.experiment_id}/runs/{result.parent_run_id}/artifacts/pareto.html")
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
