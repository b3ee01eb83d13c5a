"""mer-eval report: self-contained, escaped, CSP-locked HTML from runs scored from real data."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from mer_eval.gates import gate_run, read_scores
from mer_eval.reports.commands import report_cmd
from mer_eval.reports.html import build_report, histogram_svg, json_for_script, thumbnail_data_url
from score_fixtures import INJECTION, copy_run, scored_run, shared_or_skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("report-runs")
    return {"good": scored_run(shared, root / "good", inject=True),
            "bad": scored_run(shared, root / "bad", degraded=True)}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in_script: dict | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script, self._buf = dict(attrs), []

    def handle_data(self, data):
        if self._in_script is not None:
            self._buf.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._buf)))
            self._in_script = None


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


def table_data(html: str) -> dict:
    p = parse(html)
    blob = next(body for attrs, body in p.scripts if attrs.get("id") == "report-data")
    return json.loads(blob)


def test_injected_script_is_escaped(runs):
    html = build_report([runs["good"]])
    assert INJECTION not in html
    assert "window.__pwned" in html  # the text is there, escaped
    p = parse(html)
    assert [a.get("type", a.get("id")) for a, _ in p.scripts] == ["application/json", "app"]
    blob = next(body for attrs, body in p.scripts if attrs.get("type") == "application/json")
    assert "<" not in blob and ">" not in blob and "&" not in blob.replace("\\u0026", "")
    assert "\\u003cscript\\u003ewindow.__pwned=1;alert(1)\\u003c/script\\u003e" in blob
    data = json.loads(blob)
    texts = {s["id"]: s["texts"] for s in data["samples"]}
    assert texts["default_merr_data_MER"]["final_summary"].endswith(INJECTION)  # round-trips literally
    app = next(body for attrs, body in p.scripts if attrs.get("id") == "app")
    assert "innerHTML" not in app and "outerHTML" not in app and "insertAdjacentHTML" not in app
    assert "eval(" not in app and "document.write" not in app


def test_csp_hash_matches_the_only_executable_script(runs):
    html = build_report([runs["good"]])
    csp = next(a["content"] for t, a in parse(html).tags
               if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "img-src data:" in csp
    m = re.search(r"script-src '(sha256-[A-Za-z0-9+/=]+)'", csp)
    assert m and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    app = re.search(r'<script id="app">(.*?)</script>', html, re.S).group(1)
    assert m.group(1) == "sha256-" + base64.b64encode(hashlib.sha256(app.encode()).digest()).decode()


def test_self_contained_no_external_urls(runs):
    html = build_report([runs["good"], runs["bad"]])
    assert not re.search(r"(?i)\b(?:https?|ftp)://|//cdn|@import|url\(", html)
    for tag, attrs in parse(html).tags:
        for k in ("src", "href"):
            v = attrs.get(k)
            assert v is None or v.startswith("data:"), (tag, k, v)
        assert tag not in ("link", "iframe", "object", "embed")


def test_summary_coverage_and_distributions(runs):
    html = build_report([runs["good"]])
    df = read_scores(runs["good"])
    comp = df[(df.metric == "composite_score") & (df.status == "ok")].value
    assert f"{comp.mean():.3g}" in html
    # coverage: every not-ok reason is listed, grouped with its count
    na = df[(df.metric == "asr_wer") & (df.status != "ok")].groupby(["status", "reason"]).size()
    for (st, reason), n in na.items():
        assert f'<span class="st-{st}">{st}</span> × {n}: {reason}' in html
    # one histogram per metric, each with an escaped title
    assert html.count('class="hist"') == df.metric.nunique()
    data = table_data(html)
    assert [m["metric"] for m in data["metrics"]][0] == "composite_score"
    row = next(s for s in data["samples"] if s["id"] == "lv0880")
    assert row["values"]["asr_wer"] == 0.0 and row["statuses"]["distinct2"] == "not_applicable"
    reason = next(m["reason"] for m in row["metrics"] if m["metric"] == "distinct2")
    assert reason == df[(df.sample_id == "lv0880") & (df.metric == "distinct2")].reason.iloc[0]
    assert 0 < row["coverage"] <= 1


def test_thumbnails_are_small_and_from_the_run_only(runs, tmp_path, shared_data):
    data = table_data(build_report([runs["good"]]))
    thumbs = {s["id"]: s["thumb"] for s in data["samples"]}
    mer = [k for k in thumbs if not k.startswith("lv")]
    assert all(thumbs[k] for k in mer) and not any(thumbs[k] for k in thumbs if k.startswith("lv"))
    for k in mer:
        im = Image.open(io.BytesIO(base64.b64decode(thumbs[k].split(",", 1)[1])))
        assert max(im.size) <= 160
    outside = shared_data / "faces" / "astronaut.png"
    url, why = thumbnail_data_url(outside, runs["good"])
    assert url is None and "outside the run folder" in why
    # a peak frame that is a link out of the run is never embedded
    run = copy_run(runs["good"], tmp_path / "linked")
    frame = run / "gemini_merr" / "gemini_merr_peak_frame.png"
    frame.unlink()
    frame.symlink_to(outside)
    data = table_data(build_report([run]))
    row = next(s for s in data["samples"] if s["id"] == "gemini_merr")
    assert row["thumb"] is None


def test_leaderboard_and_gate_sections(runs, tmp_path):
    good = copy_run(runs["good"], tmp_path / "good")
    res = gate_run(good, None, ["composite_score >= 80"])
    html = build_report([good, runs["bad"]])
    assert 'id="leaderboard"' in html
    assert re.search(r"<td class=\"num\">1</td><td>good</td>", html)
    assert re.search(r"<td class=\"num\">2</td><td>bad</td>", html)
    assert f"{len(res.included)} included, {len(res.decisions) - len(res.included)} excluded" in html
    data = table_data(html)
    assert data["has_gate"]
    dec = {s["id"]: s["decision"] for s in data["samples"]}
    assert {k for k, v in dec.items() if v == "include"} == set(res.included)
    one = build_report([runs["good"]])
    assert 'id="leaderboard"' not in one and "Gate decisions" not in one


def test_autoescape_in_template_fields(runs, tmp_path):
    run = copy_run(runs["good"], tmp_path / "esc")
    man = json.loads((run / "run.json").read_text())
    man["provider"] = "<b>evil</b>"
    (run / "run.json").write_text(json.dumps(man))
    html = build_report([run])
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html


def test_helpers():
    assert json_for_script({"t": "</script><!-- & \u2028"}) == '{"t": "\\u003c/script\\u003e\\u003c!-- \\u0026 \\u2028"}'
    svg = histogram_svg([0.0, 0.1, 0.1, 0.9, 1.0], "<m>", bins=4)
    assert svg.count("<rect") == 4 and "&lt;m&gt;" in svg and "<m>" not in svg
    assert "no ok values" in histogram_svg([], "x")


def test_cli_report(runs, tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(report_cmd, [str(runs["good"]), str(runs["bad"]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="leaderboard"' in html
    r = CliRunner().invoke(report_cmd, [str(tmp_path), "-o", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "scores.parquet" in r.output
    assert not Path(tmp_path / "x.html").exists()


def test_bundled_examples_scored_gated_and_reported(examples, tmp_path):
    """examples/mer-factory (real MER-Factory outputs) scored by mer-eval, then gate, bless/regress, report."""
    import shutil

    from mer_eval.config import load_config
    from mer_eval.reports.regress import bless, regress
    from mer_eval.scoring import score_run
    from score_fixtures import TEXT_METRICS

    src = examples / "mer-factory"
    if not src.is_dir():
        pytest.skip("examples/mer-factory is not present")
    run = tmp_path / "ex"
    shutil.copytree(src, run)
    score_run(run, load_config(None, ["cache.enabled=false"]), metrics=TEXT_METRICS)
    df = read_scores(run)
    ids = sorted(set(df.sample_id))
    assert ids == sorted(p.name for p in src.iterdir() if p.is_dir())
    res = gate_run(run, "default")
    comp = df[df.metric == "composite_score"]
    for d in res.decisions:  # text metrics alone are below the min coverage: no composite, and the default
        # gate requires one, so the sample is unknown and excluded (gates fail closed)
        st, reason = comp[comp.sample_id == d.sample_id][["status", "reason"]].iloc[0]
        assert st != "ok" and f"composite_min: composite_score is {st}: {reason} (required)" in d.failed
        assert d.decision == "exclude" and "excluded (fail closed)" in d.why
    assert regress(run, bless(run)).exit_code == 0
    html = build_report([run])
    data = table_data(html)
    assert sorted(s["id"] for s in data["samples"]) == ids
    assert all(s["texts"].get("final_summary") for s in data["samples"])
    assert "Gate decisions" in html


def test_thumbnail_limit(runs):
    data = table_data(build_report([runs["good"]], max_thumbnails=2))
    with_thumb = [s["id"] for s in data["samples"] if s["thumb"]]
    assert len(with_thumb) <= 2
    notes = [s["thumb_note"] for s in data["samples"] if not s["thumb"] and not s["id"].startswith("lv")]
    assert notes and all(n == "only the first 2 samples get an embedded thumbnail" for n in notes)


# ---- evidence rule, abstentions, the composite and the probe section (examples/mer-factory) ----

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def make_probed_example(dest: Path, n_boot: int = 100) -> Path:
    """examples/mer-factory (real MER-Factory outputs) copied to ``dest``, scored with the default config,
    then probed (``RUN/mer-eval-probe/probe.json``, whose folder is itself a scored run of originals and
    twins)."""
    import shutil

    from mer_eval.cli import run_probe
    from mer_eval.config import load_config
    from mer_eval.reports.probe import PROBE_DIR, PROBE_JSON
    from mer_eval.scoring import score_run

    src = EXAMPLES / "mer-factory"
    if not src.is_dir():
        pytest.skip("examples/mer-factory is not present")
    shutil.copytree(src, dest)
    cfg = load_config(None, ["cache.enabled=false"])
    score_run(dest, cfg, use_cache=False)
    run_probe(dest, cfg, n_boot=n_boot, use_cache=False)
    if not (dest / PROBE_DIR / PROBE_JSON).is_file():
        pytest.skip("mer-eval probe wrote no probe.json")
    return dest


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    return make_probed_example(tmp_path_factory.mktemp("probed") / "mf")


def _probe_json(run: Path) -> dict:
    return json.loads((run / "mer-eval-probe" / "probe.json").read_text(encoding="utf-8"))


class _Elements(HTMLParser):
    """Text (and attributes) of every element carrying ``data-metric`` / ``data-kind`` / ``data-card``."""

    KEYS = ("data-metric", "data-kind", "data-card")

    def __init__(self):
        super().__init__()
        self.found: list[dict] = []
        self._stack: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("br", "meta", "img", "input", "hr", "link"):  # void: no end tag
            return
        e = {"tag": tag, "attrs": a, "text": [], "parents": [x["attrs"] for x in self._stack]}
        self._stack.append(e)
        if any(k in a for k in self.KEYS):
            self.found.append(e)

    def handle_endtag(self, tag):
        while self._stack:
            e = self._stack.pop()
            if e["tag"] == tag:
                break

    def handle_data(self, data):
        for e in self._stack:
            e["text"].append(data)


def elements(html: str) -> list[dict]:
    p = _Elements()
    p.feed(html)
    for e in p.found:
        e["text"] = " ".join(" ".join(e["text"]).split())  # element texts joined by a space
    return p.found


def _section(html: str, cls: str) -> str:
    m = re.search(rf'<section class="{cls}".*?</section>', html, re.S)
    assert m, f"no <section class={cls}>"
    return m.group(0)


def probe_cells(html: str) -> dict[tuple[str, str], dict]:
    sec = _section(html, "probe")
    out = {}
    for e in elements(sec):
        a = e["attrs"]
        if e["tag"] == "td" and "data-kind" in a:
            metric = next(p["data-metric"] for p in reversed(e["parents"]) if "data-metric" in p)
            out[(metric, a["data-kind"])] = e
    return out


def test_probe_section_shows_the_aurocs_of_probe_json(probed, tmp_path):
    from mer_eval.reports.html import auroc_style

    pj = _probe_json(probed)
    html = build_report([probed])
    assert "Probe: which metrics discriminate on this data" in html
    sec = _section(html, "probe")
    rows = re.findall(r'<tr data-metric="([^"]+)"', sec)
    assert rows[:1] == ["composite_score"] and "composite_lenient" not in rows  # the composite first
    assert sorted(rows) == sorted(pj["auroc"])
    kinds = pj["kinds"] + ["all"]
    heads = {e["attrs"]["data-kind"]: e["text"] for e in elements(sec) if e["tag"] == "th"}
    assert list(heads) == kinds
    for k in pj["kinds"]:
        assert heads[k] == f"{k} n={pj['twins_by_kind'][k]}"
    assert heads["all"] == f"all n={sum(pj['twins_by_kind'].values())}"
    cells = probe_cells(html)
    for m in ("composite_score",):
        for k in kinds:
            c = pj["auroc"][m][k]
            want = f"{c['auroc']:.2f}" + (f" [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]" if c["ci95"] else "")
            cell = cells[(m, k)]
            assert cell["text"] == want, (m, k, cell["text"])
            assert cell["attrs"]["style"] == auroc_style(c["auroc"])
            assert f"{c['n_pairs']} pairs" in cell["attrs"]["title"]
    # every other metric's cells too, and the colour scale: chance grey, 1.0 full green, between in between
    unmeasured = 0
    for m, row in pj["auroc"].items():
        for k, c in row.items():
            if c["not_measured"]:  # measured on no original and no twin: no number, and why on hover
                unmeasured += 1
                assert c["auroc"] is None and cells[(m, k)]["text"] == "not measured", (m, k)
                assert f"not measured: {c['not_measured']}" in cells[(m, k)]["attrs"]["title"]
                assert cells[(m, k)]["attrs"]["style"] == auroc_style(None)
            else:
                assert cells[(m, k)]["text"].startswith("–" if c["auroc"] is None else f"{c['auroc']:.2f}")
    # examples/mer-factory has no image: CLIP measures none of its samples, and its row says why
    assert all(c["not_measured"] for c in pj["auroc"]["clip_image_score"].values())
    assert unmeasured >= len(kinds)
    clip_row = next(e for e in elements(sec) if e["tag"] == "tr" and e["attrs"].get("data-metric") == "clip_image_score")
    assert "not measured on any sample: not_applicable: no peak-frame image" in clip_row["text"]
    assert auroc_style(0.5) != auroc_style(0.75) != auroc_style(1.0) != auroc_style(0.2)
    assert "#f6f6f6" in auroc_style(0.5) and "#227d44" in auroc_style(1.0)
    # skipped reasons, per kind
    kind_items = {e["attrs"]["data-kind"]: e["text"] for e in elements(sec) if e["tag"] == "li"}
    n_skipped = 0
    for k, sk in pj["skipped"].items():
        for sid, why in sk.items():
            assert why in kind_items[k] and sid in kind_items[k]
            n_skipped += 1
    assert n_skipped > 0, "examples/mer-factory should skip a transcript twin (a sample without a transcript)"
    # the CLI says where the section came from
    out = tmp_path / "r.html"
    r = CliRunner().invoke(report_cmd, [str(probed), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"probe section from {probed / 'mer-eval-probe' / 'probe.json'}" in r.output
    assert out.read_text(encoding="utf-8").count('<section class="probe"') == 1


def test_probe_section_absent_unreadable_or_hostile(probed, tmp_path):
    run = copy_run(probed, tmp_path / "p")
    pj_path = run / "mer-eval-probe" / "probe.json"
    pj = json.loads(pj_path.read_text(encoding="utf-8"))
    evil = '<img src=x onerror="window.__pwned=1">'
    pj["auroc"][evil] = pj["auroc"]["composite_score"]
    pj["metrics"].append(evil)
    pj["skipped"]["flip"] = {"x<script>alert(1)</script>": "no </td> conclusion"}
    pj_path.write_text(json.dumps(pj), encoding="utf-8")
    html = build_report([run])
    assert evil not in html and "<script>alert(1)" not in html and "no </td> conclusion" not in html
    sec = _section(html, "probe")
    assert "&lt;img src=x onerror=&#34;window.__pwned=1&#34;&gt;" in sec
    assert "no &lt;/td&gt; conclusion" in sec
    assert [a.get("type", a.get("id")) for a, _ in parse(html).scripts] == ["application/json", "app"]
    pj_path.write_text("{not json", encoding="utf-8")
    html = build_report([run])
    sec = _section(html, "probe")
    assert "probe.json: unreadable" in sec and '<table class="probe">' not in sec
    pj_path.unlink()
    html = build_report([run])
    assert '<section class="probe"' not in html
    r = CliRunner().invoke(report_cmd, [str(run), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0 and "no mer-eval-probe/probe.json" in r.output


def test_probe_json_of_an_older_version_shows_no_unmeasured_number(probed, tmp_path):
    """A probe.json written before ``not_measured`` existed holds 0.5 where nothing was measured (two unmeasured
    values tie): the report reads the pair counts and shows such a cell as not measured, the rest as written."""
    run = copy_run(probed, tmp_path / "old")
    pj_path = run / "mer-eval-probe" / "probe.json"
    pj = json.loads(pj_path.read_text(encoding="utf-8"))
    n_old = 0
    for row in pj["auroc"].values():
        for c in row.values():
            if c.pop("not_measured"):
                c.update(auroc=0.5, ci95=[0.5, 0.5], win_rate=0.5)  # what the older probe wrote there
                n_old += 1
    assert n_old > 0
    pj_path.write_text(json.dumps(pj), encoding="utf-8")
    cells = probe_cells(build_report([run]))
    for m, row in pj["auroc"].items():
        for k, c in row.items():
            text = cells[(m, k)]["text"]
            if c["measured_original"] == c["measured_twin"] == 0:
                assert text == "not measured" and "probe.json of an older mer-eval" in cells[(m, k)]["attrs"]["title"]
            else:
                assert text.startswith(f"{c['auroc']:.2f}"), (m, k, text)


def test_self_check_values_are_left_out_of_means(probed, tmp_path):
    df = read_scores(probed)
    assert "dependence" in df.columns and "independent" in df.columns
    ok = df[df.status == "ok"]
    only_self = sorted(m for m, g in ok.groupby("metric") if len(g) and (~g.independent.astype(bool)).all())
    if not only_self:
        pytest.skip("no metric of examples/mer-factory is a self-check (evidence rule changed?)")
    m = only_self[0]  # au_f1: MER-Factory's AU text checked against the AUs it was written from
    g = ok[ok.metric == m]
    html = build_report([probed])
    els = elements(html)
    card = next(e["text"] for e in elements(_section(html, "distributions"))
                if e["attrs"].get("data-metric") == m)
    head, _, rest = card.partition(" only self-checks: no mean ")  # the title line, then the empty histogram
    assert head == f"{m} ↑ n=0" and rest.startswith(f"{len(g)} self-check values left out")
    assert f"{len(g)} self-check values left out" in card
    for reason, n in g.dependence.value_counts().items():
        assert f"{n} × {reason.removeprefix('self-check: ')}" in card
    would_be = g.value.mean()
    assert f"mean {would_be:.4g}" not in html
    cov = next(e["text"] for e in elements(_section(html, "coverage"))
               if e["tag"] == "tr" and e["attrs"].get("data-metric") == m)
    assert cov.startswith(f"{m} self_check 0 / {len(df[df.metric == m])} {len(g)} ")
    card = next(e["text"] for e in els if e["attrs"].get("data-card") == "self-checks")
    assert str(int((~ok.independent.astype(bool)).sum())) in card and m in card
    data = table_data(html)
    for s in data["samples"]:
        assert s["values"][m] is None and s["statuses"][m] == "ok"
        assert s["self_checks"][m] == g[g.sample_id == s["id"]].dependence.iloc[0]
        d = next(x for x in s["metrics"] if x["metric"] == m)
        assert d["self_check"] and d["value"] == pytest.approx(g[g.sample_id == s["id"]].value.iloc[0])
    # a metric where only some values are self-checks: the mean is over the others, the rest is counted out
    run = copy_run(probed, tmp_path / "mixed")
    import pandas as pd

    sdf = pd.read_parquet(run / "scores.parquet")
    victim = sdf[(sdf.metric == "distinct2") & (sdf.status == "ok")].index[0]
    sdf.loc[victim, "independent"] = False
    sdf.loc[victim, "dependence"] = "self-check: <b>planted</b> for the test"
    sdf.to_parquet(run / "scores.parquet")
    kept = sdf[(sdf.metric == "distinct2") & (sdf.status == "ok") & (sdf.index != victim)].value
    html = build_report([run])
    card = next(e["text"] for e in elements(_section(html, "distributions"))
                if e["attrs"].get("data-metric") == "distinct2")
    assert f"n={len(kept)}, mean {kept.mean():.4g}" in card
    assert "1 self-check value left out" in card and "1 × <b>planted</b> for the test" in card
    assert "&lt;b&gt;planted" in html and "<b>planted" not in html


def _composite_cards(html: str) -> dict[str, str]:
    return {e["attrs"]["data-metric"]: e["text"] for e in elements(html)
            if "card composite" in e["attrs"].get("class", "")}


def test_one_composite_card_and_column(probed):
    for run in (probed, probed / "mer-eval-probe"):
        df = read_scores(run)
        assert "composite_lenient" not in set(df.metric)  # retired: it left abstentions out
        html = build_report([run])
        cards = _composite_cards(html)
        assert list(cards) == ["composite_score"]
        v = df[(df.metric == "composite_score") & (df.status == "ok")].value
        assert f"composite_score mean {v.mean():.3g}" in cards["composite_score"]
        assert f"{len(v)} samples with a composite" in cards["composite_score"]
        assert "abstentions count as worst" in cards["composite_score"]
        data = table_data(html)
        assert [m["metric"] for m in data["metrics"]][:1] == ["composite_score"]
        assert "composite_lenient" not in [m["metric"] for m in data["metrics"]]
        for s in data["samples"]:
            for m in ("composite_score",):
                row = df[(df.sample_id == s["id"]) & (df.metric == m)].iloc[0]
                assert s["statuses"][m] == row.status
                assert s["values"][m] == (pytest.approx(row.value) if row.status == "ok" else None)


def test_abstained_is_its_own_category(probed):
    run = probed / "mer-eval-probe"  # the probe's own scored run: originals and their corrupted twins
    df = read_scores(run)
    ab = df[df.status == "abstained"]
    if ab.empty:
        pytest.skip("no twin of examples/mer-factory abstained")
    html = build_report([run])
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    rule = next(ln for ln in style.splitlines() if ln.startswith(".st-abstained "))
    assert "var(--bad)" in rule
    assert not any("st-abstained" in ln and "st-not_applicable" in ln for ln in style.splitlines())
    for (m, reason), n in ab.groupby(["metric", "reason"]).size().items():
        assert f'<span class="st-abstained">abstained</span> × {n}: {reason}' in html
        cov = next(e for e in elements(_section(html, "coverage"))
                   if e["tag"] == "tr" and e["attrs"].get("data-metric") == m)
        total = int((ab.metric == m).sum())
        assert re.search(rf'<tr data-metric="{m}">.*?<span class="st-abstained">{total}</span>',
                         _section(html, "coverage"), re.S)
        assert f"abstained × {n}: {reason}" in cov["text"]
        hist = next(e["text"] for e in elements(_section(html, "distributions"))
                    if e["attrs"].get("data-metric") == m)
        assert f"{total} abstained (not in the histogram)" in hist
    card = next(e["text"] for e in elements(html) if e["attrs"].get("data-card") == "abstained")
    assert card.startswith(f"abstained {ab.sample_id.nunique()} ") and f"{len(ab)} values" in card
    data = table_data(html)
    for s in data["samples"]:
        want = sorted(ab[ab.sample_id == s["id"]].metric)
        assert sorted(s["abstained"]) == want
        for m in want:
            assert s["statuses"][m] == "abstained" and s["values"][m] is None
    app = next(body for attrs, body in parse(html).scripts if attrs.get("id") == "app")
    assert '"st-" + st' in app  # the table cell of an abstained metric gets class st-abstained
    # the original run has no abstention: the card says 0 and is not styled as a defect
    html = build_report([probed])
    assert not (read_scores(probed).status == "abstained").any()
    card = next(e for e in elements(html) if e["attrs"].get("data-card") == "abstained")
    assert card["text"].startswith("abstained 0 ") and "defect" not in card["attrs"]["class"]


def test_leaderboard_of_incomparable_runs_says_why(runs, tmp_path):
    """Runs scored with other parameters get no leaderboard; the report names what differs."""
    good = copy_run(runs["good"], tmp_path / "good")
    other = copy_run(runs["bad"], tmp_path / "other")
    man = json.loads((other / "run.json").read_text())
    fp = man["score"]["fingerprints"]["repetition_rate"]
    fp["params_hash"] = "0" * 16
    (other / "run.json").write_text(json.dumps(man))
    html = build_report([good, other])
    assert "Not comparable" in html and "repetition_rate" in html and "0000000000000000" in html
    assert not re.search(r"<td class=\"num\">1</td><td>good</td>", html)


# ---- gate decisions as they were made: review and unknown-included samples (real MER-Factory outputs) ----

REVIEW_METRICS = ["text_quality", "conclusion", "grounding", "au_faithfulness", "abstention"]  # no weights
REVIEW_RULES = """\
rules:
  - name: composite_min
    rule: composite_score >= 60
    required: true
  - name: grounded
    rule: grounding >= 0.5
    action: review
"""
UNKNOWN_INCLUDED = "nothing could check it: included by --include-unknown"


def make_review_gated_example(dest: Path, shared: Path) -> Path:
    """examples/mer-factory plus three real MER-Factory outputs of the shared data (two MERR annotations and an
    AU analysis, whose AU-only sample no text metric and no composite can check), scored without downloaded
    weights, then gated with a required composite and a grounding rule whose action is ``review``, unknown
    samples included on request (``--include-unknown``): every kind of gate decision, from real outputs."""
    import shutil

    from mer_eval.config import load_config
    from mer_eval.scoring import score_run

    src = EXAMPLES / "mer-factory"
    if not src.is_dir():
        pytest.skip("examples/mer-factory is not present")
    shutil.copytree(src, dest)
    ann = shared / "annotations-mer-factory"
    for sid, fn, kind in (("sh_sentiment", "default_merr_data_sentiment.json", "merr_data"),
                          ("sh_bakllava", "bakllava_llama3.2_merr.json", "merr_data"),
                          ("sh_au", "default_au_analysis.json", "au_analysis")):
        (dest / sid).mkdir()
        shutil.copy2(ann / fn, dest / sid / f"{sid}_{kind}.json")
    score_run(dest, load_config(None, ["cache.enabled=false"]), metrics=REVIEW_METRICS)
    rules = dest.parent / "rules_review.yaml"
    rules.write_text(REVIEW_RULES, encoding="utf-8")
    gate_run(dest, rules, include_unknown=True)
    return dest


@pytest.fixture(scope="module")
def review_gated(tmp_path_factory):
    return make_review_gated_example(tmp_path_factory.mktemp("review-gated") / "mf", shared_or_skip())


def _gate_kinds(run: Path) -> tuple[dict, dict[str, list[str]]]:
    """gate.json's counts and the ids of each kind of decision in gate.csv; asserts the run has every kind
    (else the tests below would check nothing)."""
    from mer_eval.gates import read_gate_table

    counts = json.loads((run / "gate.json").read_text(encoding="utf-8"))["counts"]
    rows = read_gate_table(run)
    kinds = {k: sorted(r["sample_id"] for r in rows if r["decision"] == k) for k in ("include", "exclude", "review")}
    kinds["unknown_included"] = sorted(r["sample_id"] for r in rows if r["decision"] == "include" and r["unknown"])
    assert all(kinds.values()), kinds
    assert counts["on_unknown"] == "include" and counts["unknown"] >= len(kinds["unknown_included"])
    return counts, kinds


def test_gate_card_shows_gate_json_counts_with_review_and_unknown(review_gated):
    counts, kinds = _gate_kinds(review_gated)
    assert counts["review"] == len(kinds["review"]) and counts["excluded"] == len(kinds["exclude"])
    html = build_report([review_gated])
    card = next(e for e in elements(html) if e["attrs"].get("data-card") == "gate")
    # a review sample is not an excluded one, and the unknown count is on the card
    assert card["text"] == (f"gate {counts['included']} / {counts['excluded']} / {counts['review']} "
                            f"included / excluded / to review {counts['unknown']} unknown: nothing could check "
                            "them · unknowns included by --include-unknown")
    gate = _section(html, "gate")
    assert (f"{counts['included']} included, {counts['excluded']} excluded, {counts['review']} to review; "
            f"{counts['unknown']} unknown (nothing could check them): unknowns included by --include-unknown") in gate


def test_attention_lists_review_and_unknown_included_samples(review_gated):
    counts, kinds = _gate_kinds(review_gated)
    data = table_data(build_report([review_gated]))
    by_id = {s["id"]: s for s in data["samples"]}
    att = [k.split("/", 1)[1] for k in data["attention"]]
    # the samples a person must decide on come first (configs/gates/default.yaml: the report lists them first),
    # then the excluded ones; every one of them is in "needs attention"
    need_person = sorted(set(kinds["review"]) | set(kinds["unknown_included"]))
    assert sorted(att[:len(need_person)]) == need_person
    assert set(kinds["exclude"]) <= set(att[len(need_person):])
    for sid in kinds["review"]:
        assert "needs review" in by_id[sid]["flags"] and not by_id[sid]["excluded"]
    for sid in kinds["unknown_included"]:
        assert UNKNOWN_INCLUDED in by_id[sid]["flags"] and by_id[sid]["decision"] == "include"
    plain = [s for s in kinds["include"] if s not in kinds["unknown_included"]]
    for sid in plain:  # a sample every rule passed needs no flag from the gate
        assert not {"needs review", UNKNOWN_INCLUDED} & set(by_id[sid]["flags"])
    assert data["attention_total"] == len(att)


def test_gate_card_of_an_older_gate_json_counts_gate_csv(review_gated, tmp_path):
    """A gate.json without counts: the card counts gate.csv's decisions and says so; a gate.json whose counts
    disagree with gate.csv is shown with a warning, not silently."""
    counts, kinds = _gate_kinds(review_gated)
    run = copy_run(review_gated, tmp_path / "old")
    gj = run / "gate.json"
    meta = json.loads(gj.read_text(encoding="utf-8"))
    meta.pop("counts")
    gj.write_text(json.dumps(meta), encoding="utf-8")
    html = build_report([run])
    card = next(e for e in elements(html) if e["attrs"].get("data-card") == "gate")
    # the same numbers, counted from gate.csv's decisions and its unknown column
    assert card["text"].startswith(f"gate {len(kinds['include'])} / {len(kinds['exclude'])} / {len(kinds['review'])} "
                                   f"included / excluded / to review {counts['unknown']} unknown: nothing could "
                                   "check them")
    assert "counted from gate.csv (gate.json has no counts)" in card["text"]
    meta["counts"] = dict(counts, excluded=counts["excluded"] + 1)
    gj.write_text(json.dumps(meta), encoding="utf-8")
    html = build_report([run])
    card = next(e for e in elements(html) if e["attrs"].get("data-card") == "gate")
    assert "defect" in card["attrs"]["class"]
    assert re.search(r'<p class="bad">warning: gate\.json counts excluded \d+ but gate\.csv has '
                     rf'{len(kinds["exclude"])}', html)


def test_a_run_scored_with_the_retired_lenient_composite_shows_it_as_retired(tmp_path):
    """tests/data/schema/1.1: real files of examples/mer-factory scored while composite_lenient existed. The report
    still renders it, names it retired (it left abstentions out) and keeps it out of the default columns."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "schema" / "1.1", old)
    (old / "baseline.json").unlink()
    df = read_scores(old)
    html = build_report([old])
    cards = _composite_cards(html)
    assert list(cards) == ["composite_score", "composite_lenient"]
    v = df[(df.metric == "composite_lenient") & (df.status == "ok")].value
    assert len(v) == 3 and f"composite_lenient mean {v.mean():.3g}" in cards["composite_lenient"]
    assert "retired lenient composite of an older run" in cards["composite_lenient"]
    data = table_data(html)
    assert "m:composite_lenient" not in data["default_columns"]
    assert "composite_lenient" in [m["metric"] for m in data["metrics"]]
