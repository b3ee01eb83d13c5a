"""The HTML report in a real headless Chromium (Debian ``chromium``) driven by Playwright.

Sorting, filtering and the drill-down work; an annotation holding ``<script>`` never runs (no
``window.__pwned``, no dialog) and shows literally; the CSP blocks nothing the page needs (no console
errors); a screenshot is saved in the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from score_fixtures import INJECTION, scored_run

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_report_in_chromium(browser, shared_data, tmp_path):
    from mer_eval.gates import gate_run
    from mer_eval.reports.html import write_report

    run = scored_run(shared_data, tmp_path / "run_a", inject=True)
    worse = scored_run(shared_data, tmp_path / "run_b", degraded=True)
    res = gate_run(run, None, ["composite_score >= 80", "asr_wer <= 0.3"])
    out = write_report([run, worse], tmp_path / "report.html")

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs, console_errors, requests = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.resolve().as_uri())
    page.wait_for_selector("#samples-table tbody tr")

    assert console_errors == [], console_errors  # the CSP hash matches the inline script
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    rows = page.locator("#samples-table tbody tr")
    assert rows.count() == 10

    def ids():
        return page.eval_on_selector_all("#samples-table tbody tr", "rs => rs.map(r => r.getAttribute('data-id'))")

    def composite():
        return [float(x) for x in page.eval_on_selector_all(
            "#samples-table tbody tr", "rs => rs.map(r => r.cells[3].textContent)")]

    before = ids()
    header = page.locator("#samples-table th", has_text="composite_score")
    header.click()
    asc = composite()
    assert asc == sorted(asc)
    assert ids() != before
    header.click()
    desc = composite()
    assert desc == sorted(desc, reverse=True) and desc != asc

    # filter
    page.fill("#filter", "lv08")
    assert sorted(ids()) == ["lv0870", "lv0880", "lv0890"]
    page.fill("#filter", "")
    assert rows.count() == 10
    included = sorted(res.included)
    page.select_option("#decision-filter", "include")
    assert sorted(ids()) == included and 0 < len(included) < 10
    page.select_option("#decision-filter", "exclude")
    assert sorted(ids()) == sorted(set(before) - set(included))
    page.select_option("#decision-filter", "")
    assert rows.count() == 10

    # drill-down on the sample whose final summary carries the injected script
    page.locator('#samples-table tbody tr[data-id="default_merr_data_MER"]').click()
    summary = page.locator('#detail .txt[data-field="final_summary"]')
    assert INJECTION in summary.text_content()
    assert page.locator("#detail script").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []
    thumb = page.locator("#detail-thumb")
    assert thumb.count() == 1
    w, h = page.evaluate("() => { const i = document.getElementById('detail-thumb'); "
                         "return [i.naturalWidth, i.naturalHeight]; }")
    assert 0 < max(w, h) <= 160
    assert "include" in page.locator("#detail").text_content() or "exclude" in page.locator("#detail").text_content()
    # the metric table of the drill-down lists every metric with its status
    detail_text = page.locator("#detail").text_content()
    for m in ("composite_score", "distinct2", "repetition_rate", "asr_wer", "not_applicable"):
        assert m in detail_text

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
