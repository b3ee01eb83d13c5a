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


def show_columns(page, keys):
    """Tick ``keys`` in the report's column chooser (the table shows a few columns by default)."""
    page.locator("#col-chooser summary").click()
    for k in keys:
        page.locator(f'#col-list input[data-key="{k}"]').check()
    page.locator("#col-chooser summary").click()


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
    # every run's samples, not only the first run's
    assert rows.count() == 20
    runs = page.eval_on_selector_all("#samples-table tbody tr", "rs => rs.map(r => r.dataset.run)")
    assert sorted(set(runs)) == ["run_a", "run_b"] and runs.count("run_b") == 10

    # the page opens on what a curator acts on: the excluded samples first, with the rule they failed
    excluded = sorted(d.sample_id for d in res.decisions if d.decision == "exclude")
    assert excluded
    cards = page.locator("#attention .att")
    assert cards.count() == len(excluded)
    assert cards.first.evaluate("e => e.getBoundingClientRect().top") < page.locator(
        "#per-sample").evaluate("e => e.getBoundingClientRect().top")
    first = cards.first
    assert first.get_attribute("data-id") in excluded and "excluded" in first.get_attribute("class")
    why = {d.sample_id: d for d in res.decisions}[first.get_attribute("data-id")]
    assert first.locator(".failed").text_content() == "failed: " + "; ".join(why.failed) or \
        first.locator(".failed").text_content().startswith("failed: ")
    assert why.failed[0].split(":")[0] in first.locator(".failed").text_content()
    assert first.locator('.txt[data-field="final_summary"]').count() == 1
    first_rows = page.eval_on_selector_all("#samples-table tbody tr",
                                           "rs => rs.slice(0, %d).map(r => r.dataset.id)" % len(excluded))
    assert sorted(first_rows) == excluded
    # hostile text in an attention card (or anywhere) is text, never markup
    assert page.locator("#attention script").count() == 0
    hostile = page.locator('#attention .att[data-id="default_merr_data_MER"] .txt[data-field="final_summary"]')
    if hostile.count():
        assert INJECTION in hostile.text_content()

    # column chooser: a handful of columns by default, the others toggled
    def heads():
        return page.eval_on_selector_all("#samples-table th", "hs => hs.map(h => h.dataset.key)")

    default = heads()
    assert default == ["run", "id", "label", "decision", "m:composite_score"]
    page.locator("#col-chooser summary").click()
    page.locator('#col-list input[data-key="m:distinct2"]').check()
    assert "m:distinct2" in heads()
    assert page.eval_on_selector_all("#samples-table tbody tr", "rs => rs[0].cells.length") == len(default) + 1
    page.locator('#col-list input[data-key="m:distinct2"]').uncheck()
    page.locator('#col-list input[data-key="run"]').uncheck()
    assert heads() == default[1:]
    page.locator('#col-list input[data-key="run"]').check()
    page.locator("#col-chooser summary").click()

    # the run selector narrows the table to one run
    page.select_option("#run-filter", "run_b")
    assert rows.count() == 10 and set(page.eval_on_selector_all(
        "#samples-table tbody tr", "rs => rs.map(r => r.dataset.run)")) == {"run_b"}
    page.select_option("#run-filter", "run_a")
    assert rows.count() == 10

    def ids():
        return page.eval_on_selector_all("#samples-table tbody tr", "rs => rs.map(r => r.getAttribute('data-id'))")

    def composite():
        idx = heads().index("m:composite_score")
        return [float(x) for x in page.eval_on_selector_all(
            "#samples-table tbody tr", f"rs => rs.map(r => r.cells[{idx}].textContent)")]

    before = ids()
    header = page.locator("#samples-table th", has_text="composite_score")
    header.click()
    asc = composite()
    assert asc == sorted(asc)
    assert sorted(ids()) == sorted(before)  # the same samples, reordered (the default order is worst first)
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
    page.locator('#samples-table tbody tr[data-key="run_a/default_merr_data_MER"]').click()
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


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    from test_report import make_probed_example

    return make_probed_example(tmp_path_factory.mktemp("probed-browser") / "mf")


def _rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def test_probe_self_check_and_abstained_in_chromium(browser, probed, tmp_path):
    import json
    import re

    from mer_eval.reports.html import auroc_style, write_report

    pj = json.loads((probed / "mer-eval-probe" / "probe.json").read_text(encoding="utf-8"))
    out = write_report([probed], tmp_path / "probe.html")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(out.resolve().as_uri())
    page.wait_for_selector("#samples-table tbody tr")
    assert console_errors == [], console_errors

    sec = page.locator("section.probe")
    assert sec.count() == 1 and sec.is_visible()
    first = page.eval_on_selector_all("table.probe tbody tr",
                                      "rs => rs.slice(0, 1).map(r => r.dataset.metric)")
    assert first == ["composite_score"]
    for m in first:
        for k in pj["kinds"] + ["all"]:
            c = pj["auroc"][m][k]
            cell = page.locator(f'table.probe tr[data-metric="{m}"] td[data-kind="{k}"]')
            assert cell.locator(".auc").text_content() == f"{c['auroc']:.2f}"
            bg = cell.evaluate("e => getComputedStyle(e).backgroundColor")
            assert bg == _rgb(re.search(r"background:(#[0-9a-f]{6})", auroc_style(c["auroc"])).group(1))
    shot = tmp_path / "probe-section.png"
    sec.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # a self-check is no number in the sample table: it says so, and its reason is the tooltip
    assert page.locator('#samples-table th[data-key="m:au_f1"]').count() == 0  # not a default column
    show_columns(page, ["m:au_f1"])
    header = page.locator("#samples-table th", has_text="au_f1")
    idx = page.eval_on_selector_all("#samples-table th",
                                    "hs => hs.findIndex(h => h.dataset.key === 'm:au_f1')")
    assert idx > 0
    header.click()
    cells = page.eval_on_selector_all(
        "#samples-table tbody tr", f"rs => rs.map(r => [r.cells[{idx}].textContent, r.cells[{idx}].title])")
    assert cells and all(t == "self-check" and title.startswith("self-check: ") for t, title in cells)
    page.close()

    # abstentions (corrupted twins in the probe's own run) are styled as a defect, unlike not_applicable
    out = write_report([probed / "mer-eval-probe"], tmp_path / "twins.html")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(out.resolve().as_uri())
    page.wait_for_selector("#samples-table tbody tr")
    show_columns(page, page.eval_on_selector_all("#col-list input", "cs => cs.map(c => c.dataset.key)"))
    ab = page.locator("#samples-table td.st-abstained")
    if ab.count() == 0:
        pytest.skip("no twin of examples/mer-factory abstained")
    na = page.locator("#samples-table td.st-not_applicable").first
    assert ab.first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(184, 50, 42)"
    assert na.evaluate("e => getComputedStyle(e).backgroundColor") != "rgb(184, 50, 42)"
    page.close()
