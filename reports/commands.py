"""Click commands acting on scores: compare, gate, bless, regress, report (added to ``mer-eval`` by cli.py).

Heavy imports (pandas, numpy, scipy, PIL, jinja2) happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

_run_path = click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)


def _config_options(f):
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a config key, e.g. --set tolerances.asr_wer=0.05 (repeatable).")(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="YAML config file (same keys as configs/default.yaml).")(f)
    return f


def _load_config(config_path: Optional[Path], sets: tuple[str, ...]):
    from mer_eval.config import ConfigError, load_config

    try:
        return load_config(config_path, list(sets))
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


def _fail(msg: str, code: int = 2) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=_run_path)
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the comparison as Markdown.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the comparison as CSV (one row per metric and run).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the comparison as JSON.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(100, 100000), default=2000, show_default=True,
              help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--allow-mismatch", "allow_keys", multiple=True, metavar="KEY",
              help="Compare although KEY differs between the runs (fingerprints): a metric or family name (any "
                   "difference of it), METRIC.FIELD (e.g. distinct2.code_hash) or 'all' (repeatable). Recorded "
                   "in every output.")
@_config_options
def compare_cmd(runs, markdown_out, csv_out, json_out, n_boot, seed, allow_keys, config_path, sets):
    """Compare scored runs on their common samples (the first run is the reference).

    Exit 2 (NOT COMPARABLE) when a metric was computed differently in a run than in the first (version,
    params, model, code), unless --allow-mismatch allows it."""
    from mer_eval.gates import GateError
    from mer_eval.reports.compare import AllowError, AllowList, compare_runs, print_rich, to_csv, to_markdown
    from mer_eval.store import atomic_write_json, atomic_write_text

    _load_config(config_path, sets)
    if len(runs) < 2:
        raise click.UsageError("compare needs at least two runs")
    try:
        allow = AllowList.parse(allow_keys)
    except AllowError as e:
        raise click.UsageError(str(e)) from None
    try:
        c = compare_runs(list(runs), n_boot=n_boot, seed=seed, allow=allow)
    except GateError as e:
        _fail(str(e))
    if not c.comparable:
        from mer_eval.reports.compare import comparability_lines

        for ln in comparability_lines(c) + c.notes:
            click.echo(ln)
        if json_out:  # the refusal, for CI; no tables are written for runs that are not comparable
            atomic_write_json(json_out, c.to_dict())
        sys.exit(2)
    print_rich(c)
    if markdown_out:
        atomic_write_text(markdown_out, to_markdown(c))
    if csv_out:
        atomic_write_text(csv_out, to_csv(c))
    if json_out:
        atomic_write_json(json_out, c.to_dict())


@click.command("gate")
@click.argument("run", type=_run_path)
@click.option("--rules", "rules_source", default=None,
              help="Bundled gate name (configs/gates/NAME.yaml) or a YAML path; default: config 'gates' "
                   "(unless --rule is given).")
@click.option("--rule", "rule_strings", multiple=True,
              help="A rule, e.g. 'composite_score >= 60', 'nli_contra_rate > 3 x median', "
                   "'composite_score bottom 10%', 'asr_wer is ok' (repeatable).")
@click.option("--copy-to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the included sample folders and run.json here.")
@click.option("--include-unknown", is_flag=True,
              help="Include samples no rule could judge (no composite, every rule skipped). Off by default: "
                   "the gate fails closed. Recorded in gate.json.")
@_config_options
def gate_cmd(run, rules_source, rule_strings, copy_to, include_unknown, config_path, sets):
    """Decide per sample include / exclude / review; writes RUN/gate.csv, RUN/include.txt, RUN/gate.json."""
    from mer_eval.gates import GateError, copy_included, gate_run, summary_lines

    cfg = _load_config(config_path, sets)
    source = rules_source if rules_source else (None if rule_strings else cfg.gates)
    try:
        result = gate_run(run, source, rule_strings, include_unknown=include_unknown)
    except GateError as e:
        _fail(str(e))
    for ln in summary_lines(result):
        click.echo(ln)
    click.echo(f"wrote {run / 'gate.csv'}, {run / 'include.txt'}, {run / 'gate.json'}")
    if copy_to:
        try:
            info = copy_included(run, copy_to, result.included)
        except GateError as e:
            _fail(str(e))
        click.echo(f"copied {len(info['copied'])} sample folders to {copy_to}")
        for n in info["skipped"]:
            click.echo(f"  {n}")


@click.command("bless")
@click.argument("run", type=_run_path)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Baseline JSON to write.")
@_config_options
def bless_cmd(run, out, config_path, sets):
    """Store RUN's scores as a baseline for `mer-eval regress`."""
    from mer_eval.gates import GateError
    from mer_eval.reports.regress import write_baseline

    _load_config(config_path, sets)
    try:
        b = write_baseline(run, out)
    except GateError as e:
        _fail(str(e))
    n_fp = sum(1 for m in b["metrics"].values() if m.get("fingerprint"))
    n_lo = sum(m["left_out"]["n"] for m in b["metrics"].values())
    click.echo(f"blessed {run}: {b['n_samples']} samples, {len(b['metrics'])} metrics ({n_fp} with fingerprints), "
               f"composite {b['composite_version']} -> {out}")
    if n_fp < len(b["metrics"]):
        click.echo(f"  {len(b['metrics']) - n_fp} metric(s) without a fingerprint in {run}/run.json (scored by an "
                   "older mer-eval): regress can check only their versions")
    if n_lo:
        click.echo(f"  {n_lo} self-check value(s) left out of the baseline's means (listed under left_out)")


def _parse_tolerances(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        try:
            if not sep or not k.strip():
                raise ValueError
            out[k.strip()] = float(v)
        except ValueError:
            raise click.UsageError(f"--tolerance {it!r}: expected METRIC=NUMBER, e.g. composite_score=2") from None
        if out[k.strip()] < 0:
            raise click.UsageError(f"--tolerance {it!r}: must be >= 0")
    from mer_eval.config import ConfigError, check_tolerances

    try:
        check_tolerances(out)
    except ConfigError as e:  # a misspelt metric would keep tolerance 0 while the user believes it has X
        raise click.UsageError(str(e).replace("invalid configuration:\n  ", "").replace("'tolerances.", "'--tolerance ")
                               ) from None
    return out


@click.command("regress")
@click.argument("run", type=_run_path)
@click.option("--baseline", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Baseline JSON from `mer-eval bless`.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=X",
              help="Allowed move in the wrong direction (repeatable); defaults from config 'tolerances', 0 for "
                   "other metrics.")
@click.option("--junit", "junit_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write JUnit XML (one testcase per metric).")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a Markdown summary (for a PR comment).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result as JSON (checks, mismatches, allowed mismatches, left-out self-checks).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(100, 100000), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-mismatch", "allow_keys", multiple=True, metavar="KEY",
              help="Check although KEY differs from the baseline (fingerprints): a metric or family name (any "
                   "difference of it), METRIC.FIELD (e.g. distinct2.code_hash) or 'all' (repeatable). Recorded "
                   "in every output.")
@_config_options
def regress_cmd(run, baseline, tolerances, junit_out, markdown_out, json_out, n_boot, seed, allow_keys,
                config_path, sets):
    """Exit 1 when a metric regressed against the baseline beyond tolerance and noise (or samples ok in the
    baseline are no longer ok, or no longer in the run); 2 when not comparable (a metric computed differently,
    see --allow-mismatch) or NOT CHECKED (no metric could be compared on any sample: never a pass)."""
    from mer_eval.gates import GateError
    from mer_eval.reports.compare import AllowError, AllowList
    from mer_eval.reports.regress import BaselineError, load_baseline, regress, to_junit, to_markdown, to_text
    from mer_eval.store import atomic_write_json, atomic_write_text

    cfg = _load_config(config_path, sets)
    tol = dict(cfg.tolerances)
    tol.update(_parse_tolerances(tolerances))
    try:
        allow = AllowList.parse(allow_keys)
    except AllowError as e:
        raise click.UsageError(str(e)) from None
    try:
        b = load_baseline(baseline)
        res = regress(run, b, tol, baseline_path=str(baseline), n_boot=n_boot, seed=seed, allow=allow)
    except (BaselineError, GateError) as e:
        _fail(str(e))
    click.echo(to_text(res))
    if junit_out:
        atomic_write_text(junit_out, to_junit(res))
    if markdown_out:
        atomic_write_text(markdown_out, to_markdown(res))
    if json_out:
        atomic_write_json(json_out, res.to_dict())
    sys.exit(res.exit_code)


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=_run_path)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (self-contained).")
@_config_options
def report_cmd(runs, out, config_path, sets):
    """One self-contained HTML report of RUN (several runs: with a leaderboard).

    A run with RUN/mer-eval-probe/probe.json (`mer-eval probe RUN`) gets a section on which metrics tell its
    samples from corrupted twins."""
    from mer_eval.gates import GateError
    from mer_eval.reports.html import write_report
    from mer_eval.reports.probe import PROBE_DIR, PROBE_JSON

    _load_config(config_path, sets)
    try:
        write_report(list(runs), out)
    except GateError as e:
        _fail(str(e))
    click.echo(f"wrote {out}")
    for run in runs:
        pj = Path(run) / PROBE_DIR / PROBE_JSON
        if pj.is_file():
            click.echo(f"  {run}: probe section from {pj}")
        else:
            click.echo(f"  {run}: no {PROBE_DIR}/{PROBE_JSON}; `mer-eval probe {run}` adds which metrics "
                       f"discriminate")


COMMANDS = [compare_cmd, gate_cmd, bless_cmd, regress_cmd, report_cmd]

# the names mer_eval.cli's lazy group loads ("mer_eval.reports.commands:compare", ...)
compare = compare_cmd
gate = gate_cmd
bless = bless_cmd
regress = regress_cmd
report = report_cmd
