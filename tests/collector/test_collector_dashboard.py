"""The dashboard in headless Chromium (Debian's chromium + chromium-driver, via Selenium):
what an SRE sees, and a node named with HTML shown as text, never run."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

from bench_agent.report.attest import NodeKey, PublicKey  # noqa: E402
from tests.collector_support import Collector, envelope_bytes, http, make_report  # noqa: E402
from tests.paths import DATA  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.e2e,  # a real Chromium, for seconds
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                 reason="needs Debian's chromium and chromium-driver")]
TOKEN = "dashboard-admin-token-0123"
EVIL = "<script>alert(1)</script>"
# A node and a suite named with brackets, a slash, HTML and non-ASCII letters.
MIXED = "rack[3]/gpü-<b>7</b>"
SUITE = "acceptance/[full] <em>ü</em>"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "token").write_text(TOKEN)
    server = Collector(f"sqlite:///{tmp / 'collector.db'}", tmp / "server.log",
                       "--admin-token-file", str(tmp / "token"), "--no-access-log")
    try:
        server.start()
        _populate(server)
        yield server
    finally:
        server.stop()


def _enroll(server: Collector, node: str) -> NodeKey:
    key = NodeKey.generate()
    reply = http("POST", server.url + "/v1/keys",
                 json.dumps({"node": node, "public_key": key.public.pem()}).encode(),
                 {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert reply.status == 201, reply.body
    return key


# A burn-in report signed by the engine before series carried their units
# (tests/data/burnin, captured from it): its series name the unit.
LEGACY_BURNIN = DATA / "burnin" / "legacy-v1-report.json"


def _populate(server: Collector) -> None:
    good = _enroll(server, "gpu-ok-1")
    for day, gemm in enumerate((1.1e12, 1.2e12, 1.3e12)):
        when = NOW - timedelta(days=3 - day)
        assert server.post(envelope_bytes(make_report("gpu-ok-1", when=when, gemm=gemm),
                                          good)).status == 201
    bad = _enroll(server, "gpu-bad-2")
    report = make_report("gpu-bad-2", when=NOW - timedelta(hours=2), status="FAIL", gemm=2e11)
    assert server.post(envelope_bytes(report, bad)).status == 201
    evil = _enroll(server, EVIL)
    report = make_report(EVIL, when=NOW - timedelta(minutes=30), status="ERROR")
    assert server.post(envelope_bytes(report, evil)).status == 201
    # The acceptance run failed; a quick run after it passed. The node is not PASS.
    mixed = _enroll(server, MIXED)
    older_pass = make_report(MIXED, when=NOW - timedelta(hours=6))
    failed = make_report(MIXED, when=NOW - timedelta(hours=4), status="FAIL", gemm=2e11)
    for report in (older_pass, failed):
        report["suite"] = {"name": SUITE, "sha256": "c" * 64, "path": ""}
    quick = make_report(MIXED, when=NOW - timedelta(hours=1))
    for report in (older_pass, quick, failed):  # arrival order is not finish order
        assert server.post(envelope_bytes(report, mixed)).status == 201


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 - raises when no alert is open
    except NoAlertPresentException:
        return True
    return False


def fleet_rows(driver: WebDriver) -> dict[str, list[str]]:
    rows = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#fleet tr.node"):
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_fleet_shows_each_node_its_verdict_failing_checks_and_age(
        collector: Collector, browser: WebDriver) -> None:
    browser.get(collector.url + "/")
    assert browser.title.startswith("Fleet")
    rows = fleet_rows(browser)
    assert set(rows) == {"gpu-ok-1", "gpu-bad-2", EVIL, MIXED}
    state, verdict, suites, failing, gpu, last_run, age, _ = rows["gpu-bad-2"]
    assert (state, verdict, suites, gpu) == ("burn-in", "FAIL", "quick FAIL", "")
    # The failing metric inline, with its value and the threshold it missed.
    assert failing == "cpu-gemm cpu.gemm_fp64_all_cores 200 GFLOP/s (needs >= 1 TFLOP/s)"
    assert age.startswith("2 h ")  # rendered by the server a moment after NOW
    assert last_run == (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    assert rows["gpu-ok-1"][:4] == ["burn-in", "PASS", "quick PASS", ""]
    assert rows[EVIL][1:4] == ["ERROR", "quick ERROR", "gpu-burn"]
    assert "4 nodes" in browser.find_element(By.ID, "summary").text
    assert "2 FAIL" in browser.find_element(By.ID, "summary").text


def test_a_passing_run_does_not_hide_the_failed_acceptance_run_before_it(
        collector: Collector, browser: WebDriver) -> None:
    browser.get(collector.url + "/")
    _, verdict, suites, failing, _, last_run, _, _ = fleet_rows(browser)[MIXED]
    assert verdict == "FAIL"
    assert suites.splitlines() == [f"{SUITE} FAIL", "quick PASS"]
    assert failing.startswith("cpu-gemm cpu.gemm_fp64_all_cores 200 GFLOP/s")
    assert last_run == (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    # The names are text: no element was made of their tags.
    assert browser.find_elements(By.CSS_SELECTOR, "#fleet em, #fleet td.name b") == []
    browser.find_element(By.LINK_TEXT, MIXED).click()
    assert unquote(urlparse(browser.current_url).path) == f"/nodes/{MIXED}"
    assert browser.find_element(By.ID, "node-name").text == MIXED
    assert browser.find_element(By.ID, "node-verdict").text == "FAIL"
    suite_rows = [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
                  for row in browser.find_elements(By.CSS_SELECTOR, "#suites tr.suite")]
    assert [[row[0], row[2]] for row in suite_rows] == [[SUITE, "FAIL"], ["quick", "PASS"]]
    assert suite_rows[0][3] == (NOW - timedelta(hours=4)).strftime("%Y-%m-%d %H:%M:%S")
    assert browser.find_elements(By.TAG_NAME, "em") == []
    # The suite's link is its newest run, the failed one.
    browser.find_element(By.CSS_SELECTOR, "#suites tr.suite a").click()
    assert browser.find_element(By.ID, "report-verdict").text == "FAIL"
    # The JSON API says the same; last_status stays the newest report's.
    node = json.loads(http("GET", collector.url + "/v1/nodes/" + quote(MIXED, safe="")).body)
    assert (node["status"], node["last_status"]) == ("FAIL", "PASS")
    assert [(s["suite"], s["status"]) for s in node["suites"]] == [(SUITE, "FAIL"),
                                                                  ("quick", "PASS")]


def test_a_node_named_with_html_is_shown_as_text_and_never_run(
        collector: Collector, browser: WebDriver) -> None:
    browser.get(collector.url + "/")
    assert no_alert(browser)
    # The page has no script element at all: the name's tag was escaped.
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.page_source
    browser.find_element(By.LINK_TEXT, EVIL).click()
    assert no_alert(browser)
    assert unquote(urlparse(browser.current_url).path) == f"/nodes/{EVIL}"
    assert browser.find_element(By.ID, "node-name").text == EVIL
    assert browser.find_element(By.ID, "node-verdict").text == "ERROR"
    assert browser.find_elements(By.TAG_NAME, "script") == []


def test_a_node_page_plots_its_key_metrics_over_time(collector: Collector,
                                                     browser: WebDriver) -> None:
    browser.get(collector.url + "/nodes/gpu-ok-1")
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.metric-plot")
    metrics = [f.get_attribute("data-metric") for f in figures]
    assert metrics == ["cpu.gemm_fp64_all_cores", "memory.stream_triad"]
    gemm = figures[0]
    assert len(gemm.find_elements(By.CSS_SELECTOR, "svg circle")) == 3
    assert gemm.find_element(By.CSS_SELECTOR, "svg polyline").is_displayed()
    axis = [t.text for t in gemm.find_elements(By.CSS_SELECTOR, "svg text.axis")]
    # The axis stretches down to the threshold (>= 1 TFLOP/s), drawn as a line.
    assert axis[0] == "1.3 TFLOP/s" and axis[1] == "1 TFLOP/s"
    limit = gemm.find_element(By.CSS_SELECTOR, "svg line.limit")
    assert gemm.find_element(By.CSS_SELECTOR, "svg text.limit-text").text == \
        "threshold 1 TFLOP/s"
    assert float(limit.get_attribute("y1") or 0) == 12 + 130  # the bottom of the frame
    assert [f.get_attribute("data-domain") for f in figures] == ["cpu", "memory"]
    assert "threshold >= 1 TFLOP/s" in gemm.find_element(By.TAG_NAME, "figcaption").text
    # Newest line up: the plotted line rises from left to right.
    polyline = gemm.find_element(By.CSS_SELECTOR, "polyline").get_attribute("points") or ""
    points = [tuple(map(float, p.split(","))) for p in polyline.split()]
    assert len(points) == 3
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    assert points[0][1] > points[-1][1]  # SVG y grows downwards
    assert len(browser.find_elements(By.CSS_SELECTOR, "#reports tr.report")) == 3


def test_an_old_burnin_report_is_plotted_with_the_units_its_series_names_held(
        tmp_path: Path, browser: WebDriver) -> None:
    key = PublicKey(base64.b64decode((DATA / "burnin" / "legacy-v1-report.pub").read_text()))
    server = Collector(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "server.log",
                       "--auto-enroll").start()
    try:
        posted = server.post(LEGACY_BURNIN.read_bytes(), {
            "X-Bench-Agent-Public-Key": base64.b64encode(key.raw).decode()})
        assert posted.status == 201, posted.body
        browser.get(server.url + "/nodes/legacy-1")
        _check_legacy_plots(browser)
    finally:
        server.stop()


def _check_legacy_plots(browser: WebDriver) -> None:
    plots = {f.get_attribute("data-series"): f
             for f in browser.find_elements(By.CSS_SELECTOR, "figure.burnin-plot")}
    assert set(plots) == {"cpu.load1", "gpu.gpu0.power_w", "gpu.gpu0.temp_c",
                          "gpu.gpu1.power_w", "gpu.gpu1.temp_c", "load.cpu_matmul"}

    def axis(name: str) -> list[str]:
        return [t.text for t in plots[name].find_elements(By.CSS_SELECTOR, "svg text.axis")]

    assert axis("gpu.gpu0.temp_c")[0] == "91 °C"  # the hottest sample of the capture
    assert axis("gpu.gpu0.power_w")[0].endswith(" W")
    assert axis("load.cpu_matmul")[0].endswith("FLOP/s")


def test_a_report_page_shows_its_verdict_table(collector: Collector,
                                               browser: WebDriver) -> None:
    browser.get(collector.url + "/nodes/gpu-bad-2")
    browser.find_element(By.CSS_SELECTOR, "#reports tr.report a").click()
    assert browser.find_element(By.ID, "report-verdict").text == "FAIL"
    rows = [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#verdicts tr.verdict-row")]
    assert rows[0][:6] == ["cpu-gemm", "cpu.gemm_fp64_all_cores", "", "FAIL",
                           "200 GFLOP/s", ">= 1 TFLOP/s"]
    assert rows[1][3] == "PASS"
    browser.get(collector.url + "/reports/424242")
    assert "Not found" in browser.find_element(By.TAG_NAME, "h1").text


def test_the_dashboard_needs_no_internet(collector: Collector) -> None:
    # Every page is self-contained: no external script, stylesheet, font or image.
    for path in ("/", "/nodes/gpu-ok-1", "/reports/1"):
        page = http("GET", collector.url + path).body.decode()
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in page and "src=" not in page


def test_pages_are_written_with_their_inputs_escaped(tmp_path: Path) -> None:
    from bench_agent.collector.dashboard import ENV
    from bench_agent.collector.fleet_view import SORTS, FleetQuery

    html = ENV.get_template("fleet.html").render(
        page={"total": 1, "page": 1, "pages": 1,
              "counts": {"status": {"PASS": 1}, "state": {"new": 1}},
              "nodes": [{"name": EVIL, "status": "PASS", "last_report_id": 1, "state": "new",
                         "gpu_model": EVIL, "labels": {"rack": EVIL},
                         "suites": [{"suite": EVIL, "status": "PASS", "report_id": 1}],
                         "last_finished_at": "2026-01-01T00:00:00Z",
                         "failing": [{"check": EVIL, "metric": EVIL, "device": EVIL,
                                      "value": 1.0, "unit": "FLOP/s", "threshold": EVIL,
                                      "fault_code": EVIL}],
                         "age_seconds": 5.0}]},
        query=FleetQuery(q=EVIL), menus={"gpu_model": [EVIL], "suite": [EVIL],
                                          "fault_code": [EVIL]},
        statuses=["PASS"], states=["new"], sorts=SORTS, link=lambda **_: "?", validity_days=30)
    assert "<script>" not in html
    assert "/nodes/%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html
    assert 'data-suite="&lt;script&gt;alert(1)&lt;/script&gt;"' in html
