"""The dashboard on 10,000 generated nodes in headless Chromium: the counts are filters,
the filter form narrows the list on the server, pages turn, and names holding HTML
stay text."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench_agent.collector import db
from tests.collector.fleet_generator import FAULTS, GPU_MODELS, Generated, generate
from tests.collector.test_collector_dashboard import browser, fleet_rows, no_alert, pytestmark
from tests.collector_support import Collector

__all__ = ["browser", "pytestmark"]  # the browser fixture and the Chromium skip, shared
NODES = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, Generated]]:
    tmp = tmp_path_factory.mktemp("big")
    url = f"sqlite:///{tmp / 'collector.db'}"
    database = db.Database(url)
    database.migrate()
    generated = generate(database, NODES, 3, datetime.now(UTC).replace(tzinfo=None))
    database.dispose()
    server = Collector(url, tmp / "server.log", "--no-access-log").start()
    try:
        yield server, generated
    finally:
        server.stop()


def shown(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "shown").text


def test_the_counts_at_the_top_filter_the_fleet(big: tuple[Collector, Generated],
                                                browser: WebDriver) -> None:
    server, generated = big
    browser.get(server.url + "/")
    assert browser.find_element(By.ID, "summary").text.startswith(f"{NODES} nodes")
    assert shown(browser) == f"{NODES} matching · page 1 of {NODES // 100}"
    assert len(fleet_rows(browser)) == 100  # one page, not 10,000 rows
    fail = browser.find_element(By.CSS_SELECTOR, '#summary a.count[data-status="FAIL"]')
    assert fail.text == f"{len(generated.failing)} FAIL"
    fail.click()
    rows = fleet_rows(browser)
    assert shown(browser).startswith(f"{len(generated.failing)} matching")
    assert {cells[1] for cells in rows.values()} == {"FAIL"}
    assert set(rows) <= set(generated.failing)
    # The failing metric inline: value, threshold and fault code.
    failing = next(iter(rows.values()))[3]
    assert "cpu.gemm_fp64_all_cores 200 GFLOP/s (needs >= 1 TFLOP/s) BA-" in failing
    browser.find_element(By.CSS_SELECTOR, '#states a.count[data-state="quarantined"]').click()
    assert {cells[0] for cells in fleet_rows(browser).values()} == {"quarantined"}


def test_the_filter_form_narrows_by_fault_code_gpu_and_pages(
        big: tuple[Collector, Generated], browser: WebDriver) -> None:
    server, generated = big
    browser.get(server.url + "/")
    code = FAULTS[0]
    browser.find_element(By.NAME, "fault_code").send_keys(code)
    apply(browser)
    rows = fleet_rows(browser)
    assert sorted(rows) == sorted(generated.by_fault[code])
    assert all(code in cells[3] for cells in rows.values())
    # GPU model and sort on top of it, kept in the page's links.
    Select(browser.find_element(By.NAME, "gpu_model")).select_by_visible_text(GPU_MODELS[1])
    apply(browser)
    narrowed = fleet_rows(browser)
    assert set(narrowed) <= set(rows) and {c[4] for c in narrowed.values()} <= {GPU_MODELS[1]}
    browser.get(server.url + f"/?gpu_model={GPU_MODELS[2].replace(' ', '+')}&sort=name")
    first = list(fleet_rows(browser))
    assert shown(browser).startswith(f"{generated.by_gpu[GPU_MODELS[2]]} matching")
    browser.find_element(By.ID, "next").click()
    second = list(fleet_rows(browser))
    assert "page 2 of" in shown(browser)
    assert not set(first) & set(second) and first[-1] < second[0]
    assert {c[4] for c in fleet_rows(browser).values()} == {GPU_MODELS[2]}


def test_names_holding_html_are_shown_as_text(big: tuple[Collector, Generated],
                                              browser: WebDriver) -> None:
    server, generated = big
    browser.get(server.url + "/")
    browser.find_element(By.NAME, "q").send_keys("<img")
    apply(browser)
    assert no_alert(browser)
    assert sorted(fleet_rows(browser)) == sorted(generated.html_names)
    assert browser.find_elements(By.CSS_SELECTOR, "#fleet img") == []
    assert browser.find_elements(By.TAG_NAME, "script") == []
    browser.find_element(By.LINK_TEXT, generated.html_names[0]).click()
    assert no_alert(browser)
    assert browser.find_element(By.ID, "node-name").text == generated.html_names[0]
    assert browser.find_elements(By.TAG_NAME, "img") == []


def test_a_failing_node_page_shows_its_fault_history_and_bundle(
        big: tuple[Collector, Generated], browser: WebDriver) -> None:
    server, generated = big
    node = generated.failing[0]
    browser.get(server.url + f"/nodes/{node}")
    assert browser.find_element(By.ID, "node-state").text == "quarantined"
    rows = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
            for r in browser.find_elements(By.CSS_SELECTOR, "#failing tr.failing-row")]
    assert rows and rows[0][:6] == ["cpu-gemm", "cpu.gemm_fp64_all_cores", "", "FAIL",
                                    "200 GFLOP/s", ">= 1 TFLOP/s"]
    assert rows[0][6].startswith("BA-")
    # Outliers against the 10,000-node fleet: 200 GFLOP/s beside a median near 1.25 TFLOP/s.
    outliers = browser.find_elements(By.CSS_SELECTOR, "#outliers li.outlier")
    assert [o.get_attribute("data-metric") for o in outliers] == ["cpu.gemm_fp64_all_cores"]
    assert "fleet median" in outliers[0].text
    assert browser.find_element(By.ID, "bundle").get_attribute("href", ).endswith(
        f"/v1/bundles/{node}")


def _gone(element: WebElement) -> Callable[[WebDriver], bool]:
    """selenium's staleness_of, and the same for the element's other death: asked
    while the browser swaps documents, Chrome answers "Node with given id does not
    belong to the document" (a WebDriverException, not a StaleElementReference)."""
    def predicate(_: WebDriver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return predicate


def apply(browser: WebDriver) -> None:
    """Submit the filter form and wait for the new page: a click returns before the
    browser has navigated, and the old page's rows would be read."""
    old = browser.find_element(By.ID, "fleet")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 60).until(_gone(old))
