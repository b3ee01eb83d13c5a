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
    for d in res.decisions:  # text metrics alone are below mer-v1's min coverage: rule skipped with reason
        st, reason = comp[comp.sample_id == d.sample_id][["status", "reason"]].iloc[0]
        assert st != "ok" and f"composite_min: skipped: {st}: {reason}" in d.skipped
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
