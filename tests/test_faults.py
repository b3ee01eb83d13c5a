"""Provider faults against the local scripted server (``tests/fake_servers.py``), through a real ``generate``.

One image sample asks the provider three things (visual description, AU description, synthesis). Each
scenario scripts the server's replies: 429 with Retry-After in seconds and as an HTTP date, 500/503, a hang
past the timeout, a malformed body, a body cut in the middle, empty ``choices``. For each: the retries are
bounded (never more requests than ``max_retries + 1`` per question), a fault's body is never cached and never
saved as annotation text, and the sample's ``mer_eval_meta.json`` (and ``error_logs/`` when it failed) say what
happened. The API key (``sk-TESTSECRET123``, even echoed back by the server in an error body) appears in no
file of the output folder, the caches, the log records or the HTML report.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_servers import empty, hang, malformed, ok, status
from mer_eval.generators.pipeline import META_NAME, run_generate
from mer_eval.generators.providers.openai_compat import OpenAIProvider

from mer_eval.cache import Cache
from mer_eval.config import ProviderConfig, load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "media"
KEY_ENV = "MER_EVAL_TEST_FAULT_KEY"
SECRET = "sk-TESTSECRET123"
FAST = ["generate.au_max_frames=12", "generate.concurrency=1"]
GOOD = [ok("A woman with dark hair looks to the side under soft light."),
        ok("The brow lowerer and lid tightener together suggest anger."),
        ok("The lowered brows and tightened lids suggest she is angry; the overall state is anger.")]
PARTIAL = '{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "PARTIAL-BODY half an ans'
FAULT_MARKERS = ("this is not json", "PARTIAL-BODY", "late answer", "scripted error")
TOTALS = {"faults": 0, "retried": 0, "requests": 0}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture(scope="module")
def image_in(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faults-in")
    shutil.copy(EXAMPLES / "15-f13-anc-ph.jpg", d / "anc.jpg")  # no label: a model concludes
    return d


def _generate(server, image_in: Path, tmp: Path, **pc):
    out = tmp / "out"
    cfg = load_config(None, FAST + [f"cache.dir={tmp / 'cache'}"])
    base = dict(model="test-model", base_url=server.url + "/v1", api_key_env=KEY_ENV, timeout_s=2.0,
                max_retries=2, backoff_s=0.01)
    base.update(pc)
    prov = OpenAIProvider(ProviderConfig(**base), cache=Cache(tmp / "pcache"))
    s = run_generate(image_in, out, cfg, progress=False, provider=prov)
    return s, out, prov


def _meta(out: Path) -> dict:
    return json.loads((out / "anc" / META_NAME).read_text(encoding="utf-8"))


def _annotation_text(out: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (out / "anc").glob("anc_*.json"))


def _cached_values(tmp: Path) -> list[str]:
    db = tmp / "pcache" / "cache.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        return [bytes(v).decode("utf-8", "replace") for (v,) in c.execute("SELECT value FROM kv")]


def _never_kept(tmp: Path, out: Path) -> None:
    text = _annotation_text(out)
    cached = "\n".join(_cached_values(tmp))
    for m in FAULT_MARKERS:
        assert m not in text, f"a fault's body ({m!r}) was saved as annotation text"
        assert m not in cached, f"a fault's body ({m!r}) was cached"


def _count(server, n_faults: int, prov) -> None:
    TOTALS["faults"] += n_faults
    TOTALS["requests"] += len(server.requests)
    TOTALS["retried"] += prov.stats["retries"]


def _http_date(seconds: float) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("first", [status(429, retry_after="1"), status(429, retry_after="HTTPDATE"),
                                   status(500), status(503)],
                         ids=["429-seconds", "429-http-date", "500", "503"])
def test_transient_fault_is_retried_and_recorded(fake_server, image_in, tmp_path, first):
    if first.retry_after == "HTTPDATE":  # dated when the 429 goes out, not when the test starts (setup takes time)
        first.retry_after = lambda: _http_date(2)
    fake_server.push(first, *GOOD)
    s, out, prov = _generate(fake_server, image_in, tmp_path)
    assert s["done"] == 1 and s["failed"] == 0, s["failures"]
    assert len(fake_server.requests) == 4  # 3 questions + 1 retry
    assert prov.stats["retries"] == 1
    meta = _meta(out)
    assert meta["provider_attempts"] == 4
    assert max(c["attempts"] for c in meta["provider_calls"].values()) == 2  # the retried one says so
    if first.code == 429:  # Retry-After honoured: the retry came about that long after the 429
        posts = [r for r in fake_server.requests if r.method == "POST"]
        assert posts[1].t - posts[0].t >= 0.8
    _never_kept(tmp_path, out)
    _count(fake_server, 1, prov)


# (attempts the faulty question gets with max_retries=2, words of the recorded reason): a body that is not an
# answer is not retried (the server answered; asking again is not a fix), a 5xx is, up to max_retries
PERSISTENT = {"malformed": (1, "malformed response", "(not JSON)"), "partial": (1, "malformed response", "(not JSON)"),
              "empty": (1, "malformed response", "(no choices)"), "500": (3, "gave up after 3 attempt(s)", "HTTP 500")}


@pytest.mark.parametrize("fault", list(PERSISTENT))
def test_persistent_fault_is_bounded_and_explained(fake_server, image_in, tmp_path, fault):
    reply = {"malformed": malformed(), "partial": status(200, body=PARTIAL), "empty": empty(),
             "500": status(500)}[fault]
    # the first question (visual description) gets the fault on every attempt
    fake_server.push(reply, reply, reply, *GOOD[1:])
    s, out, prov = _generate(fake_server, image_in, tmp_path, max_retries=2)
    attempts, *words = PERSISTENT[fault]
    assert len([r for r in fake_server.requests if r.method == "POST"]) == attempts
    assert prov.stats["attempts"] == attempts and prov.stats["retries"] == attempts - 1
    assert s["done"] == 0 and s["failed"] == 1  # the sample is not passed off as annotated
    err = json.loads((out / "error_logs" / "anc.json").read_text(encoding="utf-8"))
    assert err["sample_id"] == "anc" and err["stage"] == "describe:visual_description"
    for w in words:
        assert w in err["reason"], err["reason"]
    assert not (out / "anc" / "anc_image_analysis.json").exists()  # no annotation written from a fault
    _never_kept(tmp_path, out)
    _count(fake_server, attempts, prov)


@pytest.mark.parametrize("retry_read", [False, True], ids=["default-no-retry", "retry_read_timeout"])
def test_hang_past_timeout_is_bounded(fake_server, image_in, tmp_path, retry_read):
    fake_server.push(hang(3.0), hang(3.0), hang(3.0), *GOOD[1:])
    s, out, prov = _generate(fake_server, image_in, tmp_path, timeout_s=0.5, retry_read_timeout=retry_read,
                             max_retries=1)
    attempts = 2 if retry_read else 1  # a read timeout is retried only when asked (the server may still run)
    assert len([r for r in fake_server.requests if r.method == "POST"]) == attempts
    assert s["failed"] == 1 and s["done"] == 0
    reason = json.loads((out / "error_logs" / "anc.json").read_text(encoding="utf-8"))["reason"]
    assert "timed out after 0.5 s" in reason, reason
    assert not (out / "anc" / "anc_image_analysis.json").exists()
    _never_kept(tmp_path, out)
    _count(fake_server, attempts, prov)


def test_api_key_never_written(fake_server, image_in, tmp_path, caplog, monkeypatch):
    """A run with every kind of fault, the server echoing the Authorization header into an error body, then
    score and the HTML report: the key is in no file under the output folder, the caches and the report,
    and in no log record."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MER_EVAL_CACHE_DIR", str(tmp_path / "cache"))
    fake_server.push(status(429, retry_after="0"), status(401, body='{"error": "bad key {auth}"}'),
                     *GOOD)
    s, out, prov = _generate(fake_server, image_in, tmp_path, max_retries=2)
    assert any(SECRET in (r.headers.get("authorization") or "") for r in fake_server.requests)  # it was sent
    # the echoed body was recorded (the 401 is the sample's reason) with the key taken out of it
    reason = json.loads((out / "error_logs" / "anc.json").read_text(encoding="utf-8"))["reason"]
    assert "HTTP 401" in reason and "bad key" in reason and SECRET not in reason, reason
    from mer_eval.cli import main

    r = CliRunner().invoke(main, ["score", str(out), "--metrics", "text_quality,abstention"])
    assert r.exit_code == 0, r.output
    report = tmp_path / "report.html"
    r2 = CliRunner().invoke(main, ["report", str(out), "-o", str(report)])
    assert r2.exit_code == 0, r2.output
    assert report.is_file()
    hits = []
    for root in (out, tmp_path / "cache", tmp_path / "pcache", report):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for p in files:
            if SECRET.encode() in p.read_bytes():
                hits.append(str(p))
    hits += [f"log: {rec.getMessage()[:80]}" for rec in caplog.records if SECRET in rec.getMessage()]
    hits += ["cli output"] if SECRET in r.output + r2.output else []
    assert hits == [], hits
    _count(fake_server, 2, prov)
    print(f"\nfaults injected {TOTALS['faults']}, retries {TOTALS['retried']}, requests {TOTALS['requests']}, "
          f"secrets found {len(hits)}")
