"""``mer-eval review RUN``: a local page that walks a curator through the samples the gate excluded or flagged.

Security model (MER-Factory's dashboard runs any shell command and serves any path; this serves neither):

* bound to ``127.0.0.1`` only, on a random free port;
* a per-session token (``secrets.token_urlsafe``) is in the URL printed to the console; every request must
  carry it (``?t=`` or the ``X-Review-Token`` header), compared in constant time, else 403;
* no shell, no command endpoint; files are served only when they are media of a queued sample and resolve
  (symlinks followed) inside the run folder: ``../../etc/passwd`` or an absolute path -> 403 / 404;
* the page carries a Content-Security-Policy header allowing only its one inline script (by sha256), inline
  styles and same-origin media / fetch; every annotation text is rendered with ``textContent`` / ``value``.

Decisions (accept / reject) and edits (final summary, label) are appended to ``RUN/review.jsonl``
(:func:`mer_eval.gates.append_review`: who, when, sample id, action, before / after); the generated files are
never written. ``mer-eval gate`` then lets a human decision beat every rule, ``export`` uses the edited summary
/ label, and ``mer-eval report`` marks human decisions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import mimetypes
import os
import re
import secrets
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import click

from mer_eval.gates import (EDIT_FIELDS, REVIEWED_SHA, GateError, annotation_sha256, append_review, human_staleness,
                             left_to_person, read_gate_table, read_review, read_scores)
from mer_eval.paths import is_within

TEXT_FIELDS = ("transcript", "audio_description", "visual_expression", "visual_objective", "video_content",
               "image_description", "au_text_description", "llm_au_description")
MEDIA_KINDS = ("peak_frame_image", "image", "video", "audio")
HASH_PLACEHOLDER = "__MER_EVAL_REVIEW_SCRIPT_SHA256__"


def _num(v: Any) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def queue_reason(row: dict[str, str]) -> Optional[str]:
    """Why a gate.csv row goes to a reviewer, or None (included by rules that could check it): a human decision,
    an exclusion, a ``review`` decision, or a sample nothing could check (gate.csv's ``unknown``) that is included
    only because unknowns were included on request (``--include-unknown``)."""
    dec = row.get("decision")
    if row.get("decided_by") == "human":
        human = "accept" if dec == "include" else "reject" if dec == "exclude" else dec
        return f"decided by a human: {human}"
    if dec == "exclude":
        return "excluded by the gate"
    if dec in ("review", "include"):
        return left_to_person(row)
    return f"gate decision {dec!r} unknown to this version"  # never dropped silently


def build_queue(run_dir: Path, digests: bool = False) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """The samples the gate excluded, sent to review or included only because nothing could check them and
    unknowns were included on request (plus those a human already decided), worst first: lowest composite first,
    a sample without a composite before all. Returns (items, allowed media files by URL path)."""
    from mer_eval.discovery import discover

    run_dir = Path(run_dir).resolve()
    table = read_gate_table(run_dir)
    if table is None:
        raise GateError(f"{run_dir} has no gate.csv; run `mer-eval gate {run_dir}` first")
    review = read_review(run_dir)
    samples = {s.id: s for s in discover(run_dir).samples}
    df = read_scores(run_dir)
    metrics: dict[str, list[dict[str, Any]]] = {}
    for sid, m, v, st, why in zip(df["sample_id"], df["metric"], df["value"], df["status"], df["reason"]):
        metrics.setdefault(str(sid), []).append({"metric": str(m), "value": _num(v), "status": str(st),
                                                 "reason": None if why is None or why != why else str(why)})
    items, files = [], {}
    for row in table:
        sid = row["sample_id"]
        reason = queue_reason(row)
        if reason is None:
            continue
        s = samples.get(sid)
        ann = s.annotation if s else None
        ed = review.get(sid, {}).get("edits", {})
        media = []
        for k in MEDIA_KINDS:
            p = getattr(s, k, None) if s else None
            if p is None:
                continue
            rp = Path(p).resolve()
            if not rp.is_file() or not is_within(rp, run_dir):
                continue
            url = "/files/" + "/".join(rp.relative_to(run_dir).parts)
            files[url] = rp
            media.append({"kind": k, "url": url, "name": rp.name})
        comp = next((m["value"] for m in metrics.get(sid, []) if m["metric"] == "composite_score"
                     and m["status"] == "ok"), None)
        r = review.get(sid, {})
        # the annotation's hash: to record with a decision (``digests``), or to tell an earlier one stale; not
        # read for the page's other requests (every media file fetched rebuilds the queue)
        digest = annotation_sha256(s) if s and (digests or r.get("decision")) else None
        stale = human_staleness(r.get("sha256"), digest) if r.get("decision") else None
        items.append({
            "id": sid, "decision": row.get("decision"), "decided_by": row.get("decided_by") or "rules",
            "reason": reason, "why": row.get("why") or "", "composite": comp,
            "failed": [x for x in (row.get("failed") or "").split("; ") if x],
            "skipped": [x for x in (row.get("skipped") or "").split("; ") if x],
            "unknown": row.get("unknown") or "",
            "texts": {k: getattr(ann, k) for k in TEXT_FIELDS if ann is not None and getattr(ann, k)},
            "summary": (ed["final_summary"]["after"] if "final_summary" in ed
                        else (ann.final_summary if ann else None)),
            "label": ed["label"]["after"] if "label" in ed else (s.label if s else None) or row.get("label"),
            "edited": sorted(ed), "human": None if stale else r.get("decision"), "human_stale": stale,
            "annotation_sha256": digest,
            "metrics": sorted(metrics.get(sid, []), key=lambda m: (m["status"] == "ok", m["metric"])),
            "media": media,
        })
    items.sort(key=lambda it: (it["composite"] is not None, it["composite"] or 0.0, it["id"]))
    return items, files


def render_page() -> tuple[str, str]:
    """The page (no data inside: it fetches the queue) and its CSP."""
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True)
    out = env.get_template("review.html.j2").render()
    m = re.search(r'<script id="app">(.*?)</script>', out, re.S)
    if m is None:
        raise RuntimeError('review template lacks <script id="app">')
    digest = base64.b64encode(hashlib.sha256(m.group(1).encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'self' data:; "
           "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return out, csp


class ReviewServer:
    """The review session: a ThreadingHTTPServer on 127.0.0.1 with a token."""

    def __init__(self, run_dir: Path, reviewer: str, port: int = 0):
        self.run_dir = Path(run_dir).resolve()
        self.reviewer = reviewer
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()
        self.page, self.csp = render_page()
        build_queue(self.run_dir)  # fail now (no gate.csv, unreadable review.jsonl), not on the first request
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/?t={self.token}"

    def start(self) -> "ReviewServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        sid, action = body.get("sample_id"), body.get("action")
        if not isinstance(sid, str) or action not in ("accept", "reject", "edit"):
            raise GateError("need sample_id and action accept | reject | edit")
        with self.lock:
            items, _ = build_queue(self.run_dir, digests=True)
            item = next((it for it in items if it["id"] == sid), None)
            if item is None:
                raise GateError(f"{sid!r} is not in the review queue")
            entry = {"who": self.reviewer, "when": datetime.now(timezone.utc).isoformat(), "sample_id": sid,
                     "action": action, REVIEWED_SHA: item["annotation_sha256"]}  # what was judged
            if action == "edit":
                field, after = body.get("field"), body.get("after")
                if field not in EDIT_FIELDS or not isinstance(after, str):
                    raise GateError(f"an edit needs field ({', '.join(EDIT_FIELDS)}) and after (text)")
                entry.update(field=field, after=after, before=item["summary" if field == "final_summary"
                                                                 else "label"])
            else:
                entry.update(before=item["human"] or item["decision"],
                             after="include" if action == "accept" else "exclude")
            append_review(self.run_dir, entry)
        return entry


def _handler(srv: ReviewServer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mer-eval-review"
        sys_version = ""

        def log_message(self, fmt, *args):  # quiet: the console shows the URL only
            return

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", srv.csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json")

        def _authorised(self, query: dict) -> bool:
            given = self.headers.get("X-Review-Token") or (query.get("t") or [""])[0]
            return hmac.compare_digest(given.encode("utf-8"), srv.token.encode("utf-8"))

        def do_GET(self):
            parts = urlsplit(self.path)
            if not self._authorised(parse_qs(parts.query)):
                return self._send(403, b"forbidden: missing or wrong token\n")
            path = parts.path
            if path == "/":
                return self._send(200, srv.page.encode("utf-8"), "text/html; charset=utf-8")
            if path == "/api/queue":
                try:
                    items, _ = build_queue(srv.run_dir)
                except GateError as e:
                    return self._json(500, {"error": str(e)})
                return self._json(200, {"run": srv.run_dir.name, "reviewer": srv.reviewer, "items": items})
            if path.startswith("/files/"):
                rel = unquote(path[len("/files/"):])
                target = (srv.run_dir / rel).resolve()
                if rel.startswith("/") or not is_within(target, srv.run_dir):
                    return self._send(403, b"forbidden: outside the run\n")
                _, files = build_queue(srv.run_dir)
                if files.get("/files/" + rel) != target or not target.is_file():
                    return self._send(404, b"not found\n")
                ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                return self._send(200, target.read_bytes(), ctype)
            return self._send(404, b"not found\n")

        def do_POST(self):
            parts = urlsplit(self.path)
            if not self._authorised(parse_qs(parts.query)):
                return self._send(403, b"forbidden: missing or wrong token\n")
            if parts.path != "/api/decision":
                return self._send(404, b"not found\n")
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                return self._send(415, b"application/json only\n")
            n = int(self.headers.get("Content-Length") or 0)
            if n > 1_000_000:
                return self._send(413, b"too large\n")
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
                entry = srv.decide(body if isinstance(body, dict) else {})
            except (json.JSONDecodeError, GateError) as e:
                return self._json(400, {"error": str(e)})
            return self._json(200, entry)

        def _refuse(self):
            self._send(405, b"method not allowed\n")

        do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


@click.command("review")
@click.argument("run", type=click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path))
@click.option("--reviewer", default=None, help="Who decides (recorded in review.jsonl); default: $USER.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a random free one).")
def review(run, reviewer, port):
    """Review the samples the gate excluded or flagged, in a local page (127.0.0.1, token in the URL).

    Keys: j / k next / previous, a accept, r reject, e edit the summary and label. Decisions go to
    RUN/review.jsonl; re-run `mer-eval gate RUN` to apply them."""
    who = reviewer or os.environ.get("USER") or os.environ.get("USERNAME")
    if not who:
        raise click.UsageError("no reviewer: give --reviewer NAME (or set $USER)")
    try:
        srv = ReviewServer(run, who, port)
    except GateError as e:
        raise click.ClickException(str(e)) from None
    n = len(build_queue(srv.run_dir)[0])
    click.echo(f"{n} samples to review in {srv.run_dir} as {who}")
    click.echo(f"open {srv.url}")
    click.echo("(Ctrl+C to stop; then `mer-eval gate RUN` applies the decisions)")
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
