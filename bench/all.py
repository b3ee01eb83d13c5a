"""Every benchmark of issue #12 in one invocation, every target in one table (not a test: figures measured here).

Runs, each as a subprocess, in this order:

  score     bench/score_bench.py --real-size --precision --encoder-efficiency   (--quick: --tiny-models --n 8, a
            smaller precision section) -- batched vs one-at-a-time (target >= 5x), wall / pure model time
            (<= 1.10), unchanged re-score / first run (<= 0.05), fp32 / int8 seconds per tower, each family's score
            against its encoder passes alone (>= 0.80 on a GPU: --score-args "--device cuda")
  scale     bench/scale_bench.py --sizes 1000,10000,100000     -- text-only seconds and peak RSS per size
            (100k < 60 s, peak RSS < 1 GiB)
  generate  bench/generate_bench.py --json                     (--quick: --rounds 1) -- seconds per sample by
            stage, concurrency 4 vs 1 speed-up

and writes bench/results/all.json: the date, the machine, and per part its command line, exit code, seconds and
the JSON the part wrote (a scale part that ran, not --quick, also refreshes scale_bench's own scale.json beside
it). A part that exits non-zero (or writes no JSON) is recorded as failed with the tail of
its stderr, never with numbers. Then it prints one table of every target: measured value, target, and met /
NOT met (rows without a target in the issue say "reported").

    python bench/all.py [--quick] [--sizes 1000,10000,100000] [--only score,scale,generate] [--out PATH]
                        [--score-args "--n 8 --metrics clip,nli,clap"] [--engine local|process|ray --workers N]
                        [--readme [--readme-path README.md]]
    python bench/all.py --from-json bench/results/all.json [--readme]     (render only, nothing run)
    python bench/all.py --only scale --merge [--readme]   (run one part; the others' results kept from --out)

``--merge`` (with ``--only``) keeps the parts it does not run as the existing ``--out`` file has them, each with
the date it was measured (shown beside it in the table's notes), and replaces the ones it runs.

``--readme`` rewrites the block between ``<!-- bench:all -->`` and ``<!-- /bench:all -->`` in README.md with a
markdown table made from the results (date and machine in its heading); it refuses to put ``--quick`` figures
into the repository's README.

Exit code: 0 when every part ran (whether its targets are met or not), 1 when a part failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PARTS = ("score", "scale", "generate")
# a part whose script keeps its own results file (scale_bench.py: bench/results/scale.json) gets it refreshed
# from the same run, beside --out
PART_FILES = {"scale": "scale.json"}
BEGIN, END = "<!-- bench:all -->", "<!-- /bench:all -->"
STDERR_TAIL_CHARS = 3000
GIB_MIB = 1024.0

# the targets: (key in score_bench's JSON, label, comparison, threshold, shown as)
SCORE_TARGETS = (
    ("batched_over_one_at_a_time", "batched vs one-at-a-time", ">=", 5.0, "≥ 5×"),
    ("wall_over_model", "wall / pure model time (batched)", "<=", 1.10, "≤ 1.10"),
    ("rescore_over_first", "unchanged re-score / first run", "<=", 0.05, "≤ 0.05"),
)
ENCODER_EFFICIENCY_TARGET = 0.80  # score throughput / the encoder's alone, on a lent GPU (CPU: reported)
SCALE_SECONDS_TARGET = {100000: 60.0}  # only the 100k size has a seconds target
SCALE_RSS_TARGET_MIB = GIB_MIB


def machine_info() -> dict:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_1_5_15": load}


def _help_has(script: Path, option: str) -> bool:
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO)
    return out.returncode == 0 and option in out.stdout


def part_command(name: str, a: argparse.Namespace, tmp: Path) -> tuple[list[str], Path | None, str | None]:
    """(command, JSON file it writes or None for JSON on stdout, error that stops it from being run)."""
    py = sys.executable
    if name == "score":
        out = tmp / "score.json"
        cmd = [py, str(BENCH / "score_bench.py"), "--data", str(a.data), "--json-out", str(out),
               "--encoder-efficiency"]
        if a.quick:
            cmd += ["--tiny-models", "--n", "8", "--precision", "--precision-images", "4", "--repeat", "1"]
        else:
            cmd += ["--real-size", "--precision"]
        cmd += shlex.split(a.score_args or "")
        return cmd, out, None
    if name == "scale":
        out = tmp / "scale.json"
        cmd = [py, str(BENCH / "scale_bench.py"), "--sizes", a.sizes, "--data", str(a.data), "--out", str(out)]
        for opt, val in (("--engine", a.engine), ("--workers", a.workers)):
            if val is None:
                continue
            if not _help_has(BENCH / "scale_bench.py", opt):
                return cmd, out, f"bench/scale_bench.py has no {opt} option (its --help does not show it)"
            cmd += [opt, str(val)]
        return cmd, out, None
    if name == "generate":
        cmd = [py, str(BENCH / "generate_bench.py"), "--json"] + (["--rounds", "1"] if a.quick else [])
        return cmd, None, None
    raise ValueError(name)


def _tail(text: str, n: int = STDERR_TAIL_CHARS) -> str:
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.replace("\r\n", "\n").split("\n")]  # progress bars: last frame
    return "\n".join(ln for ln in lines if ln.strip())[-n:]


def run_part(name: str, cmd: list[str], json_path: Path | None, echo: bool, timeout: float | None) -> dict:
    """Run one benchmark; its record: command, exit code, seconds, and either its JSON or why it failed."""
    rec: dict = {"command": cmd, "command_line": shlex.join(cmd)}
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), PYTHONUNBUFFERED="1")
    print(f"== {name}: {shlex.join(cmd)}", flush=True)
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, errors="replace",
                                cwd=REPO, env=env)
        timer = None
        if timeout:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
        out_lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            out_lines.append(line)
            if echo:
                print(f"  [{name}] {line}", end="", flush=True)
        code = proc.wait()
        if timer is not None:
            timer.cancel()
        rec["seconds"] = time.perf_counter() - t0
        rec["exit_code"] = code
        err.seek(0)
        stderr = err.read()
    stdout = "".join(out_lines)
    if timeout and code != 0 and rec["seconds"] >= timeout:
        rec["timed_out"] = True
    failure = None
    result = None
    if code != 0:
        failure = f"exit code {code}" + (f" (killed after the {timeout:g} s timeout)" if rec.get("timed_out") else "")
    else:
        try:
            result = json.loads(json_path.read_text(encoding="utf-8")) if json_path else json.loads(stdout)
        except (OSError, ValueError) as e:
            failure = f"exit code 0 but no JSON results ({type(e).__name__}: {e})"
        else:
            if not isinstance(result, dict):
                failure, result = "exit code 0 but its JSON is not an object", None
    if failure:
        rec.update(status="failed", reason=failure, stderr_tail=_tail(stderr) or _tail(stdout))
    else:
        rec.update(status="ok", result=result)
    print(f"== {name}: {rec['status']} in {rec['seconds']:.1f} s" + (f" ({failure})" if failure else ""), flush=True)
    return rec


# ---------------------------------------------------------------------------------------------- targets table

def _judge(value: float | None, op: str, thr: float) -> str:
    if value is None:
        return "not measured"
    ok = value >= thr if op == ">=" else value <= thr if op == "<=" else value < thr
    return "met" if ok else "NOT met"


def _row(part, measure, shown, target="—", status="reported", value=None) -> dict:
    return {"part": part, "measure": measure, "measured": shown, "target": target, "status": status, "value": value}


def _failed_row(part: str, rec: dict) -> dict:
    return _row(part, "(whole part)", f"failed: {rec.get('reason', 'failed')}", "—", "failed")


def score_rows(rec: dict) -> list[dict]:
    r = rec["result"]
    rows = []
    detail = {
        "batched_over_one_at_a_time": lambda: f"{r['one_at_a_time_s']:.2f} s one-at-a-time vs {r['batched_s']:.2f} s",
        "wall_over_model": lambda: f"{r['batched_s']:.2f} s wall vs {r['model_s']:.2f} s model",
        "rescore_over_first": lambda: f"{r['rescore_s']:.2f} s vs {r['first_cached_run_s']:.2f} s",
    }
    fmt = {"batched_over_one_at_a_time": "{:.2f}×", "wall_over_model": "{:.3f}", "rescore_over_first": "{:.3f}"}
    if "batched_s" in r:
        for key, label, op, thr, shown_t in SCORE_TARGETS:
            v = r.get(key)
            shown = "not measured (no model time recorded)" if v is None else \
                f"{fmt[key].format(v)} ({detail[key]()})"
            rows.append(_row("score", label, shown, shown_t, _judge(v, op, thr), v))
    else:
        rows.append(_row("score", "batched / wall / re-score", "not run (--precision-only)", "—", "not measured"))
    prec = r.get("precision_rows")
    if prec is None:
        rows.append(_row("score", "fp32 / int8 speed-ups", "not run (no --precision)", "—", "not measured"))
    for p in prec or []:
        if "unavailable" in p:
            rows.append(_row("score", f"fp32 / int8, {p['tower']} ({p['precision']})",
                             f"unavailable: {p['unavailable']}", "—", "not measured"))
            continue
        agree = ", ".join(f"{k.replace('_fp32_int8', '').replace('_', ' ')} {v:.4f}" for k, v in p.items()
                          if k.startswith(("min_", "max_", "argmax_")))
        rows.append(_row("score", f"fp32 / int8 speed-up, {p['tower']} ({p['inputs']} inputs)",
                         f"{p['fp32_over_int8']:.2f}× ({p['fp32_s']:.2f} s vs {p['int8_s']:.2f} s; {agree})",
                         value=p["fp32_over_int8"]))
    for e in r.get("encoder_efficiency_rows") or []:  # results from before this section: no rows
        label = f"score / encoder alone, {e['family'].upper()} ({e['device']})"
        if "unavailable" in e:
            rows.append(_row("score", label, f"unavailable: {e['unavailable']}", "—", "not measured"))
            continue
        gpu = e["device"].startswith("cuda")
        rows.append(_row("score", label,
                         f"{e['efficiency']:.2f} ({e['score_inputs_per_s']:.1f} vs {e['encoder_inputs_per_s']:.1f} "
                         f"inputs/s; {e['inputs']} inputs in {e['passes']} passes)",
                         f"≥ {ENCODER_EFFICIENCY_TARGET:.2f} on a GPU",
                         _judge(e["efficiency"], ">=", ENCODER_EFFICIENCY_TARGET) if gpu else "reported",
                         e["efficiency"]))
    return rows


def scale_rows(rec: dict) -> list[dict]:
    r = rec["result"]
    rows = []
    got = {row["n"]: row for row in r.get("rows", [])}
    for n, row in sorted(got.items()):
        thr = SCALE_SECONDS_TARGET.get(n)
        extra = "" if row.get("sample_files_written", n) == n else \
            f"; only {row['sample_files_written']} of {n} sample files written"
        shown = f"{row['seconds']:.1f} s ({row['samples_per_s']:.1f} samples/s{extra})"
        rows.append(_row("scale", f"text-only {n} samples: seconds", shown,
                         f"< {thr:g} s" if thr else "—",
                         ("NOT met" if extra else _judge(row["seconds"], "<", thr)) if thr else "reported",
                         row["seconds"]))
        rows.append(_row("scale", f"text-only {n} samples: peak RSS", f"{row['peak_rss_mib']:.0f} MiB",
                         "< 1 GiB", _judge(row["peak_rss_mib"], "<", SCALE_RSS_TARGET_MIB), row["peak_rss_mib"]))
    for n, thr in SCALE_SECONDS_TARGET.items():
        if n not in got:
            sizes = ",".join(str(k) for k in sorted(got)) or "none"
            rows.append(_row("scale", f"text-only {n} samples", f"not run (sizes {sizes})",
                             f"< {thr:g} s, < 1 GiB", "not measured"))
    if got and got[max(got)].get("cpu_ms_per_sample") is not None:  # results before CPU was measured: no row
        n = max(got)
        row = got[n]
        drv = row.get("driver_cpu_ms_per_sample")  # the score process's own share (serial), when measured
        serial = "" if drv is None else \
            f"; the driver alone {drv:.2f} ms: {drv * 100:.0f} s at 100k however many cores"
        rows.append(_row("scale", f"text-only {n} samples: CPU per sample",
                         f"{row['cpu_ms_per_sample']:.2f} ms ({row['cores_busy']:.2f} of {row['cpus']} cores busy"
                         f"{serial})",
                         f"60 s for 100k needs ≤ {row['cpu_ms_budget_100k']:.2f} ms on {row['cpus']} cores",
                         "reported", row["cpu_ms_per_sample"]))
    if len(got) >= 2:
        lo, hi = min(got), max(got)
        ratio = got[hi]["peak_rss_mib"] / got[lo]["peak_rss_mib"]
        rows.append(_row("scale", f"peak RSS {hi} / {lo} samples", f"{ratio:.2f}", "flat", "reported", ratio))
    return rows


def generate_rows(rec: dict) -> list[dict]:
    r = rec["result"]
    rows = [_row("generate", "samples done", f"{r['done']}/{r['samples']}"
                 + (f" (failures: {r['failures']})" if r.get("failed") else ""),
                 "all", "met" if r["done"] == r["samples"] and not r.get("failed") else "NOT met", r["done"])]
    for st, v in r.get("per_stage_seconds_c1", {}).items():
        rows.append(_row("generate", f"{st}: seconds per sample (concurrency 1, n={v['n']})",
                         f"{v['mean_s']:.3f} s (min {v['min_s']:.3f}, max {v['max_s']:.3f})", value=v["mean_s"]))
    rounds = len(r.get("walls_all_rounds", {}).get("1", r.get("walls_all_rounds", {}).get(1, [])))
    sp = r.get("speedup_c4_over_c1")
    rows.append(_row("generate", "concurrency 4 vs 1 speed-up",
                     ("not measured" if sp is None else f"{sp:.2f}×")
                     + f" ({r['wall_c1_s']:.2f} s vs {r['wall_c4_s']:.2f} s, best of {rounds}; "
                     f"{r['seconds_per_sample_c1']:.2f} vs {r['seconds_per_sample_c4']:.2f} s/sample)",
                     value=sp))
    return rows


ROWS = {"score": score_rows, "scale": scale_rows, "generate": generate_rows}


def target_rows(results: dict) -> list[dict]:
    rows = []
    for name, rec in results.get("parts", {}).items():
        rows += ROWS[name](rec) if rec.get("status") == "ok" else [_failed_row(name, rec)]
    return rows


def heading(results: dict) -> str:
    m = results.get("machine", {})
    load = m.get("loadavg_1_5_15")
    mach = f"{m.get('cpus')} CPUs, Python {m.get('python')}, {m.get('platform')}" + \
        (f", load average {load[0]:g} at start" if load else "")
    return f"{results.get('when', '?')}, {mach}" + (" — `--quick` smoke-run settings" if results.get("quick") else "")


def render_text(results: dict) -> str:
    rows = target_rows(results)
    cols = ("part", "measure", "measured", "target", "status")
    w = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in cols}
    line = lambda vals: " | ".join(str(v).ljust(w[c]) for c, v in zip(cols, vals))  # noqa: E731
    out = [f"all targets, {heading(results)}", line(cols), "-+-".join("-" * w[c] for c in cols)]
    out += [line([r[c] for c in cols]) for r in rows]
    for name, rec in results.get("parts", {}).items():
        if rec.get("status") != "ok":
            out += ["", f"{name} FAILED ({rec.get('reason')}): {rec.get('command_line')}", "stderr tail:",
                    *("  " + ln for ln in (rec.get("stderr_tail") or "(empty)").splitlines()[-25:])]
    return "\n".join(out)


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _short_cmd(rec: dict) -> str:
    """The command line as a reader would type it: no interpreter path, no temporary JSON path."""
    cmd = list(rec.get("command", []))
    if cmd and cmd[0] == sys.executable or (cmd and Path(cmd[0]).name.startswith("python")):
        cmd = ["python"] + [str(Path(cmd[1]).relative_to(REPO)) if Path(cmd[1]).is_relative_to(REPO) else cmd[1]] \
            + cmd[2:]
    for opt in ("--json-out", "--out", "--data"):
        if opt in cmd:
            i = cmd.index(opt)
            del cmd[i: i + 2]
    return shlex.join(cmd)


def merge_parts(old: dict, new: dict) -> dict:
    """``new`` (a run of some parts) with the parts of ``old`` it did not run, each dated (``when``: the run
    that measured it)."""
    out = dict(new)
    parts = {}
    for name, rec in (old.get("parts") or {}).items():
        if name not in new.get("parts", {}):
            parts[name] = {**rec, "when": rec.get("when") or old.get("when")}
    parts.update(new.get("parts", {}))
    out["parts"] = {name: parts[name] for name in PARTS if name in parts}
    out["merged"] = bool(set(parts) - set(new.get("parts", {})))
    return out


def render_markdown(results: dict) -> str:
    rows = target_rows(results)
    out = [f"### All targets in one run (`python bench/all.py`): {heading(results)}", "",
           "| part | measure | measured | target | status |", "|---|---|---|---|---|"]
    for r in rows:
        st = r["status"]
        st = f"**{st}**" if st in ("met", "NOT met", "failed") else st
        out.append(f"| {r['part']} | {_md(r['measure'])} | {_md(r['measured'])} | {_md(r['target'])} | {st} |")
    out.append("")
    for name, rec in results.get("parts", {}).items():
        tail = ""
        if rec.get("status") != "ok":
            last = (rec.get("stderr_tail") or "").strip().splitlines()
            tail = f" — **failed**, last stderr line: `{_md(last[-1]) if last else ''}`"
        when = rec.get("when")
        dated = f", measured {when}" if when and when != results.get("when") else ""
        out.append(f"- {name}: `{_short_cmd(rec)}`, exit {rec.get('exit_code')}, "
                   f"{rec.get('seconds', 0):.0f} s{dated}{tail}")
    out.append("")
    out.append("Figures from `bench/results/all.json`; \"reported\" rows have no target in issue #12.")
    return "\n".join(out)


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the bench:all markers replaced by ``block`` (markers kept)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"README must hold exactly one {BEGIN} and one {END} marker")
    i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
    if j < i:
        raise ValueError(f"{END} comes before {BEGIN}")
    return text[:i] + "\n" + block.strip("\n") + "\n" + text[j:]


def write_readme(path: Path, results: dict) -> None:
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, render_markdown(results))
    if new != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    print(f"{'rewrote' if new != text else 'unchanged:'} the bench:all block of {path}")


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small smoke-run settings: score --tiny-models --n 8, generate --rounds 1")
    ap.add_argument("--sizes", default="1000,10000,100000", help="scale_bench sizes (comma-separated)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--only", default=",".join(PARTS), help=f"parts to run, of {','.join(PARTS)}")
    ap.add_argument("--merge", action="store_true",
                    help="keep the parts not run from the existing --out file (each dated), replace the others")
    ap.add_argument("--score-args", default="", help="extra arguments for score_bench.py (one string)")
    ap.add_argument("--engine", default=None, help="scale_bench --engine (passed only if its --help shows it)")
    ap.add_argument("--workers", type=int, default=None, help="scale_bench --workers (same)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per part before it is killed")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "all.json")
    ap.add_argument("--from-json", type=Path, default=None, help="render this all.json; run nothing")
    ap.add_argument("--readme", action="store_true", help="rewrite the bench:all block of --readme-path")
    ap.add_argument("--readme-path", type=Path, default=None, help="default: the repository's README.md")
    ap.add_argument("--quiet", action="store_true", help="do not echo the parts' output")
    a = ap.parse_args(argv)

    if a.from_json:
        results = json.loads(a.from_json.read_text(encoding="utf-8"))
    else:
        parts = [p for p in a.only.split(",") if p]
        bad = [p for p in parts if p not in PARTS]
        if bad or not parts:
            print(f"--only: unknown part(s) {bad} (choose from {', '.join(PARTS)})", file=sys.stderr)
            return 2
        results = {"bench": "all", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "machine": machine_info(), "quick": a.quick, "argv": sys.argv[1:] if argv is None else argv,
                   "parts": {}}
        with tempfile.TemporaryDirectory(prefix="mer-bench-all-") as tmp:
            for name in parts:
                cmd, jpath, err = part_command(name, a, Path(tmp))
                if err:
                    results["parts"][name] = {"command": cmd, "command_line": shlex.join(cmd), "exit_code": None,
                                              "seconds": 0.0, "status": "failed", "reason": err, "stderr_tail": ""}
                    print(f"== {name}: failed ({err})", flush=True)
                    continue
                started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                results["parts"][name] = run_part(name, cmd, jpath, echo=not a.quiet and name != "generate",
                                                  timeout=a.timeout)
                results["parts"][name]["when"] = started
                rec = results["parts"][name]
                own = PART_FILES.get(name)
                if own and rec.get("status") == "ok" and not a.quick:  # the part's own results file, beside --out
                    a.out.parent.mkdir(parents=True, exist_ok=True)
                    (a.out.parent / own).write_text(json.dumps(rec["result"], indent=2) + "\n", encoding="utf-8")
                    print(f"wrote {a.out.parent / own}")
        if a.merge and a.out.is_file():
            results = merge_parts(json.loads(a.out.read_text(encoding="utf-8")), results)
        results["machine"]["loadavg_1_5_15_at_end"] = machine_info()["loadavg_1_5_15"]
        results["table"] = target_rows(results)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = a.out.with_name(a.out.name + ".tmp")
        tmp_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        tmp_out.replace(a.out)
        print(f"wrote {a.out}")
    print()
    print(render_text(results))
    if a.readme:
        path = a.readme_path or REPO / "README.md"
        if results.get("quick") and a.readme_path is None:
            print("refusing to put --quick figures into the repository's README (give --readme-path to write "
                  "another file)", file=sys.stderr)
            return 2
        try:
            write_readme(path, results)
        except ValueError as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 2
    failed = [n for n, rec in results.get("parts", {}).items() if rec.get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
