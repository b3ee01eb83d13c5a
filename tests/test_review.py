"""``mer-eval review`` end to end: the server's refusals (no token, a raw ``../../etc/passwd``, an absolute path,
a file of the run that is not a queued sample's media), then the page in headless Chromium (Debian
``chromium``, Playwright): keys j / k / a / r / e on a run built from real MER-Factory outputs, a hostile
summary (``<script>``, ``</textarea>``) that stays inert text, and review.jsonl honoured by gate, export and
the report."""

from __future__ import annotations

import csv
import http.client
import json
from pathlib import Path

import pytest

from mer_eval.gates import gate_run, load_gate, read_review
from score_fixtures import build_run, score, shared_or_skip

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = "</textarea><script>window.__pwned=1;alert(1)</script><img src=x onerror=\"window.__pwned=2\">"
RULES = ["composite_score >= 95"]  # excludes most real samples: a queue to review


@pytest.fixture
def run(tmp_path):
    shared = shared_or_skip()
    r = build_run(shared, tmp_path / "run")
    p = r / "gemini_merr" / "gemini_merr_merr_data.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    data["final_summary"] = data["final_summary"] + "\n" + HOSTILE
    p.write_text(json.dumps(data), encoding="utf-8")
    score(r, shared)
    gate_run(r, None, RULES)
    return r


@pytest.fixture
def server(run):
    from mer_eval.reports.review import ReviewServer

    srv = ReviewServer(run, "tester").start()
    yield srv
    srv.stop()


def _get(srv, path: str, headers=None):
    host, port = srv.httpd.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", path, headers=headers or {})  # http.client sends the path as given: nothing normalised
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body, dict(r.getheaders())


def test_server_refuses_without_token_and_outside_the_run(server, run):
    t = server.token
    assert server.httpd.server_address[0] == "127.0.0.1" and server.httpd.server_address[1] > 0
    assert _get(server, "/")[0] == 403
    assert _get(server, "/api/queue?t=wrong")[0] == 403
    assert _get(server, "/api/queue", {"X-Review-Token": t[:-1]})[0] == 403
    st, body, hdr = _get(server, f"/?t={t}")
    assert st == 200 and b"<script id=\"app\">" in body
    assert "script-src 'sha256-" in hdr["Content-Security-Policy"] and "default-src 'none'" in \
        hdr["Content-Security-Policy"]
    for path in ("/../../etc/passwd", "/files/../../etc/passwd", "/files/../../../../../../etc/passwd",
                 "/files//etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"):
        st, body, _ = _get(server, f"{path}?t={t}")
        assert st in (403, 404), (path, st)
        assert b"root:" not in body
    st, _, _ = _get(server, f"/files/scores.parquet?t={t}")  # inside the run, but not a sample's media
    assert st == 404
    items = json.loads(_get(server, f"/api/queue?t={t}")[1])["items"]
    url = next(m["url"] for it in items for m in it["media"])
    assert _get(server, url)[0] == 403  # media need the token too
    st, body, hdr = _get(server, f"{url}?t={t}")
    assert st == 200 and hdr["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
    # worst first: no composite, then ascending composite
    comps = [it["composite"] for it in items]
    known = [c for c in comps if c is not None]
    assert known == sorted(known) and comps[: comps.count(None)] == [None] * comps.count(None)
    host, port = server.httpd.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("POST", f"/api/decision?t={t}", body="sample_id=x", headers={"Content-Type": "text/plain"})
    assert c.getresponse().status == 415
    c.close()


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


@pytest.mark.slow
def test_review_in_chromium(browser, server, run, tmp_path):
    from mer_eval.generators.export import export_run

    queue = json.loads(_get(server, f"/api/queue?t={server.token}")[1])["items"]
    ids = [it["id"] for it in queue]
    assert "gemini_merr" in ids and len(ids) >= 3
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")

    def current():
        return page.get_attribute("body", "data-current")

    def wait_status(text):
        page.wait_for_function("t => document.getElementById('status').textContent.indexOf(t) >= 0", arg=text)

    assert current() == ids[0]
    # why the sample is in the queue, then the gate's own words
    assert page.text_content("#why") == f"{queue[0]['reason']}: {queue[0]['why']}" and queue[0]["reason"]
    page.keyboard.press("j")
    assert current() == ids[1]
    page.keyboard.press("k")
    assert current() == ids[0]
    accepted = ids[0]
    page.keyboard.press("a")
    wait_status(f"accepted {accepted}")
    page.keyboard.press("j")
    rejected = current()
    assert rejected == ids[1]
    page.keyboard.press("r")
    wait_status(f"rejected {rejected}")
    # the hostile sample: shown literally, nothing ran
    while current() != "gemini_merr":
        page.keyboard.press("j")
    assert HOSTILE in page.text_content("#summary")
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert page.locator("#summary script").count() == 0 and page.locator("main img:not(.frame)").count() == 0
    page.keyboard.press("e")
    page.wait_for_selector("#editor", state="visible")
    assert page.input_value("#ed-summary").endswith(HOSTILE)  # </textarea> did not break out
    new_summary = "The speaker is frustrated: brows lowered, tense voice. Edited by hand."
    page.fill("#ed-summary", new_summary)
    page.fill("#ed-label", "contempt")
    page.keyboard.press("Control+Enter")
    wait_status("edited gemini_merr (2 fields)")
    page.keyboard.press("a")
    wait_status("accepted gemini_merr")
    assert page.text_content("#summary") == new_summary and page.text_content("#label") == "contempt"
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert errors == [], errors  # the CSP allowed the page's own script and fetches
    page.screenshot(path=str(tmp_path / "review.png"))

    lines = [json.loads(x) for x in (run / "review.jsonl").read_text().splitlines()]
    assert [(e["sample_id"], e["action"]) for e in lines] == [
        (accepted, "accept"), (rejected, "reject"), ("gemini_merr", "edit"), ("gemini_merr", "edit"),
        ("gemini_merr", "accept")]
    assert all(e["who"] == "tester" and e["when"] for e in lines)
    ed = {e["field"]: e for e in lines if e["action"] == "edit"}
    assert ed["final_summary"]["before"].endswith(HOSTILE) and ed["final_summary"]["after"] == new_summary
    assert ed["label"]["after"] == "contempt"
    gen = json.loads((run / "gemini_merr" / "gemini_merr_merr_data.json").read_text(encoding="utf-8"))
    assert gen["final_summary"].endswith(HOSTILE)  # the generated file is untouched
    assert read_review(run)["gemini_merr"]["decision"] == "accept"

    # gate honours the human decisions over its rules
    gate_run(run, None, RULES)
    with (run / "gate.csv").open(encoding="utf-8", newline="") as f:
        rows = {r["sample_id"]: r for r in csv.DictReader(f)}
    assert rows[accepted]["decision"] == "include" and rows[accepted]["decided_by"] == "human"
    assert rows[accepted]["why"].startswith("include (human)")
    assert rows[rejected]["decision"] == "exclude" and rows[rejected]["decided_by"] == "human"
    assert rows["gemini_merr"]["label"] == "contempt"
    inc = load_gate(run)
    assert inc[accepted] and inc["gemini_merr"] and not inc[rejected]

    # export --only-included uses the edited summary and label
    res = export_run(run, "csv", tmp_path / "out.csv", only_included=True)
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        exp = {r["sample_id"]: r for r in csv.DictReader(f)}
    assert "gemini_merr" in exp and rejected not in exp and accepted in exp, res
    assert exp["gemini_merr"]["final_summary"] == new_summary and exp["gemini_merr"]["label"] == "contempt"

    # the report marks human decisions
    from mer_eval.reports.html import build_report

    html = build_report([run])
    assert "include (human)" in html and "decided by a human reviewer" in html


def test_queue_holds_review_and_unknown_included_samples(tmp_path):
    """A sample nothing could check, included only because of --include-unknown, reaches a reviewer (real
    MER-Factory outputs: examples/mer-factory plus an AU-only analysis no text metric can check)."""
    from mer_eval.reports.review import ReviewServer, build_queue
    from test_report import UNKNOWN_INCLUDED, make_review_gated_example

    run = make_review_gated_example(tmp_path / "mf", shared_or_skip())
    with (run / "gate.csv").open(encoding="utf-8", newline="") as f:
        rows = {r["sample_id"]: r for r in csv.DictReader(f)}
    kinds = {k: sorted(s for s, r in rows.items() if r["decision"] == k) for k in ("exclude", "review")}
    kinds["unknown_included"] = sorted(s for s, r in rows.items() if r["decision"] == "include" and r["unknown"])
    assert all(kinds.values()), kinds  # the run has every kind, else this checks nothing
    items = {it["id"]: it for it in build_queue(run)[0]}
    assert sorted(items) == sorted(kinds["exclude"] + kinds["review"] + kinds["unknown_included"])
    for sid in kinds["unknown_included"]:
        it = items[sid]
        assert it["reason"] == UNKNOWN_INCLUDED and it["decision"] == "include" and it["unknown"] == rows[sid]["unknown"]
        assert it["why"] == rows[sid]["why"]  # the gate's own words, as it decided
    assert all(items[s]["reason"] == "needs review" for s in kinds["review"])
    assert all(items[s]["reason"] == "excluded by the gate" for s in kinds["exclude"])
    # the curator can decide on it: accepted, it stays in the queue as a human decision
    sid = kinds["unknown_included"][0]
    srv = ReviewServer(run, "tester").start()
    try:
        entry = srv.decide({"sample_id": sid, "action": "accept"})
    finally:
        srv.stop()
    assert entry["before"] == "include" and entry["after"] == "include"
    gate_run(run, run.parent / "rules_review.yaml", include_unknown=True)
    it = {i["id"]: i for i in build_queue(run)[0]}[sid]
    assert it["decided_by"] == "human" and it["human"] == "accept" and it["reason"] == "decided by a human: accept"


def _reannotate(run: Path, sid: str, summary: str) -> None:
    p = run / sid / f"{sid}_merr_data.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    data["final_summary"] = summary
    p.write_text(json.dumps(data), encoding="utf-8")


def test_a_human_decision_on_an_annotation_that_changed_is_not_applied(run, tmp_path):
    """A curator accepts the real llava_merr and rejects gemini_merr, and edits bakllava_merr's summary; then each
    is re-generated (its MER-Factory JSON rewritten). The old decisions were about other texts: the accept opens
    nothing (the rules decide), the reject of a sample the rules would include goes back to review, and the
    edited summary is not exported over the new text. A decision on an unchanged annotation still applies."""
    from mer_eval.gates import REVIEW_JSONL, append_review
    from mer_eval.generators.export import export_run
    from mer_eval.reports.review import ReviewServer, build_queue

    srv = ReviewServer(run, "tester")  # decide() needs no listening socket
    try:
        for sid, action in (("llava_merr", "accept"), ("gemini_merr", "reject"), ("default_merr_data_MER", "accept")):
            e = srv.decide({"sample_id": sid, "action": action})
            assert len(e["annotation_sha256"]) == 64  # what was judged is recorded with the decision
        srv.decide({"sample_id": "bakllava_merr", "action": "edit", "field": "final_summary",
                    "after": "The speaker looks calm and content; a curator wrote this."})
        srv.decide({"sample_id": "bakllava_merr", "action": "accept"})
    finally:
        srv.httpd.server_close()
    r = gate_run(run, None, RULES)
    before = {d.sample_id: d for d in r.decisions}
    assert before["llava_merr"].decision == "include" and before["llava_merr"].decided_by == "human"
    assert before["default_merr_data_MER"].decided_by == "human" and before["gemini_merr"].decision == "exclude"

    _reannotate(run, "llava_merr", "Unknown.")
    _reannotate(run, "gemini_merr", "The person is sad: lowered brows and a quiet, slow voice.")
    _reannotate(run, "bakllava_merr", "The person is angry.")
    r = gate_run(run, None, RULES)
    d = {x.sample_id: x for x in r.decisions}
    assert d["llava_merr"].decision == "exclude" and d["llava_merr"].decided_by == "rules"  # accept not applied
    assert "accepted by tester" in d["llava_merr"].why and "annotation changed after it" in d["llava_merr"].why
    assert d["llava_merr"].human["stale"] and d["llava_merr"].human["decision"] == "accept"
    assert d["default_merr_data_MER"].decision == "include" and d["default_merr_data_MER"].decided_by == "human"
    assert any("made on an annotation that has changed since" in w for w in r.warnings), r.warnings
    assert not load_gate(run)["llava_merr"] and not load_gate(run)["bakllava_merr"]
    g = json.loads((run / "gate.json").read_text(encoding="utf-8"))
    assert g["human_decisions"]["llava_merr"]["stale"].startswith("the annotation changed")

    # rules that include everything: the stale reject is sent to a person, never silently included
    r = gate_run(run, None, ["composite_score >= 0"])
    d = {x.sample_id: x for x in r.decisions}
    assert d["gemini_merr"].decision == "review" and "rejected by tester" in d["gemini_merr"].why
    assert d["llava_merr"].decision == "include" and d["llava_merr"].decided_by == "rules"
    assert not load_gate(run)["gemini_merr"]
    q = {it["id"]: it for it in build_queue(run)[0]}
    assert q["gemini_merr"]["human"] is None and "annotation changed" in q["gemini_merr"]["human_stale"]

    # the summary edited on the old annotation is not exported over the new one
    res = export_run(run, "csv", tmp_path / "out.csv", only_included=False)
    assert "bakllava_merr" in res.skipped and "edited by tester" in res.skipped["bakllava_merr"], res.skipped
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        exp = {x["sample_id"]: x for x in csv.DictReader(f)}
    assert "bakllava_merr" not in exp and "gemini_merr" in exp

    # a decision recorded before mer-eval kept the hash cannot be checked: it applies as before
    (run / REVIEW_JSONL).unlink()
    append_review(run, {"sample_id": "llava_merr", "action": "accept", "who": "old", "when": "t0"})
    d = {x.sample_id: x for x in gate_run(run, None, RULES).decisions}
    assert d["llava_merr"].decision == "include" and d["llava_merr"].decided_by == "human"
