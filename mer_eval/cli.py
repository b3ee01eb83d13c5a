"""The ``mer-eval`` command line. It calls everything; nothing imports it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import click

from mer_eval import __version__

# command name -> "module:attribute", imported only when that command is listed or run
LAZY_COMMANDS = {
    "generate": "mer_eval.generators.commands:generate",
    "export": "mer_eval.generators.commands:export",
    "compare": "mer_eval.reports.commands:compare",
    "gate": "mer_eval.reports.commands:gate",
    "bless": "mer_eval.reports.commands:bless",
    "regress": "mer_eval.reports.commands:regress",
    "report": "mer_eval.reports.commands:report",
    "review": "mer_eval.reports.review:review",
    "judge": "mer_eval.generators.judge:judge",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        import importlib.util

        present = {n for n, spec in LAZY_COMMANDS.items() if importlib.util.find_spec(spec.split(":")[0])}
        return sorted(set(super().list_commands(ctx)) | present)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        from mer_eval.registry import load_object

        return load_object(LAZY_COMMANDS[name])

    def invoke(self, ctx):
        from mer_eval.discovery import DiscoveryError

        try:
            return super().invoke(ctx)
        except DiscoveryError as e:  # an input the user named cannot be read: one line, exit 1, no traceback
            raise click.ClickException(str(e)) from None


def config_options(f):
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override one config key, e.g. --set score.batch_size=8 (repeatable).")(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="YAML file with the same keys as configs/default.yaml.")(f)
    return f


def load_cfg(config_path: Optional[Path], sets) -> "object":
    from mer_eval.config import ConfigError, load_config

    try:
        return load_config(config_path, list(sets or []))
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


# -1 quiet (-q), 0 normal, 1+ verbose (-v, -vv): set by the group's options, read by console()
VERBOSITY = {"level": 0}


def console(stderr: bool = False):
    """The rich console of a command: silent under ``-q``; on stderr when stdout carries ``--json``."""
    from rich.console import Console

    return Console(width=max(100, min(160, int(os.environ.get("COLUMNS", "140")))), stderr=stderr,
                   quiet=VERBOSITY["level"] < 0)


class OneLineUsageError(click.ClickException):
    """A usage error printed as one ``Error: ...`` line (no usage block), exit status 2."""

    exit_code = 2


def parse_metrics(metrics: Optional[str]) -> Optional[list[str]]:
    """``--metrics a,b`` as a list of registered families, or a one-line usage error naming the known ones."""
    if not metrics:
        return None
    from mer_eval.registry import available

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    known = available("metrics")
    bad = [m for m in names if m not in known]
    if bad or not names:
        raise OneLineUsageError(f"--metrics: unknown metric famil{'y' if len(bad) == 1 else 'ies'} "
                               f"{', '.join(repr(b) for b in bad) or '(empty list)'}; known: "
                               f"{', '.join(sorted(known))}")
    return names


def media_dir_option(f):
    return click.option("--media-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                        metavar="DIR", help="Where the media a MER-Factory output names (source_path, audio_path) "
                        "are: found by relative path or file name under DIR, never outside it "
                        "(mer_eval.media_dir).")(f)


def limit_option(f):
    return click.option("--limit", type=click.IntRange(min=1), metavar="N",
                        help="Only the first N samples in discovery order (to try a few).")(f)


def set_verbosity(quiet: int, verbose: int) -> None:
    import logging

    level = -1 if quiet else min(verbose, 2)
    VERBOSITY["level"] = level
    logging.basicConfig(level={-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(level, logging.DEBUG),
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel({-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(level,
                                                                                              logging.DEBUG))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mer-eval")
@click.option("-q", "--quiet", count=True, help="Print only errors (and --json output).")
@click.option("-v", "--verbose", count=True, help="More detail: -v info, -vv debug logging.")
def main(quiet, verbose):
    """mer-eval: measure the quality of multimodal emotion recognition (MER) annotations.

    \b
    validate INPUT   what the dataset holds and what each stage / metric can use
    models           every model mer-eval knows, where it resolved, or why not
    generate IN OUT  run the MER annotation pipeline (MER-Factory layout)
    score RUN        per-sample metrics + composite -> mer_eval_scores.json, scores.parquet
    compare / gate / bless / regress / report   act on scores
    demo             all of it on the bundled example data
    cache info|clear the result cache: where, how big, empty it
    """
    set_verbosity(quiet, verbose)


# ---- validate -----------------------------------------------------------------------------------

@main.command()
@click.argument("input_path", type=click.Path(exists=True, path_type=Path))
@click.option("--label-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV name,label (MER-Factory's --label-file).")
@click.option("--transcripts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference transcripts: CSV name,transcript or CMU Sphinx 'transcription' file.")
@limit_option
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary (JSON) on stdout.")
@media_dir_option
@config_options
def validate(input_path, label_file, transcripts, limit, as_json, config_path, sets, media_dir=None):
    """Show what INPUT holds and, per stage and metric, which samples it can use and why not."""
    from mer_eval.validate import render_validation

    cfg = load_cfg(config_path, sets)
    if not limit and not as_json and media_dir is None:
        render_validation(console(), input_path, cfg, label_file=label_file, transcripts=transcripts)
        return
    from mer_eval.discovery import discover_tree
    from mer_eval.validate import check_metrics, check_stages, render_dataset

    datasets = discover_tree(Path(input_path), label_file=label_file, transcripts=transcripts)
    if media_dir is not None:
        from mer_eval.media_dir import apply_media_dir

        for ds in datasets:
            apply_media_dir(ds, media_dir)
    datasets = limit_datasets(datasets, limit)
    if not as_json:
        con = console()
        for ds in datasets:
            render_dataset(con, ds, cfg)
        con.print(f"[bold]{sum(len(d.samples) for d in datasets)} samples[/bold]"
                  f"{f' (--limit {limit})' if limit else ''} in {len(datasets)} dataset(s)")
        return
    out = []
    for ds in datasets:
        out.append({
            "root": str(ds.root), "kind": ds.kind, "n_samples": len(ds.samples), "notes": list(ds.notes),
            "samples": [{"id": s.id, "type": s.type.value, "label": s.label,
                         "reference_transcript": bool(s.reference_transcript), "notes": list(s.notes),
                         "generation_error": s.generation_error}
                        for s in ds.samples],
            "stages": {k: {"ready": len(g.get("", [])), "cannot_run": {r: ids for r, ids in g.items() if r}}
                       for k, g in check_stages(ds.samples).items()},
            "metrics": {k: {"ready": len(g.get("", [])), "cannot_run": {r: ids for r, ids in g.items() if r}}
                        for k, g in check_metrics(ds.samples, cfg.score_metrics(), cfg).items()},
        })
    click.echo(json.dumps({"input": str(input_path), "limit": limit,
                           "n_samples": sum(len(d.samples) for d in datasets), "datasets": out}, indent=2))


def limit_datasets(datasets: list, limit: Optional[int]) -> list:
    """The first ``limit`` samples over ``datasets`` in discovery order (datasets left empty are dropped)."""
    if not limit:
        return datasets
    from dataclasses import replace

    out, left = [], limit
    for ds in datasets:
        if left <= 0:
            break
        out.append(replace(ds, samples=list(ds.samples[:left])))
        left -= len(out[-1].samples)
    return out


# ---- models -------------------------------------------------------------------------------------

@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_options
def models(as_json, config_path, sets):
    """List every model mer-eval knows: role, where it resolved, sha256, or exactly why it is missing."""
    from rich.markup import escape

    from mer_eval.models import all_models, resolve_from_config

    cfg = load_cfg(config_path, sets)
    rows = [resolve_from_config(k, cfg) for k in all_models()]
    if as_json:
        click.echo(json.dumps([{**r.ref(), "key": r.key, "role": r.role, "available": r.available,
                                "reason": r.reason, "looked": r.looked} for r in rows], indent=2))
        return
    from rich.table import Table

    t = Table(title="mer-eval models", show_lines=True)
    for c in ("key", "role", "id", "available", "where", "sha256 / why not"):
        t.add_column(c, overflow="fold")
    for r in rows:
        if r.available and r.source != "download":
            where = f"{r.source}: {r.path}"
            detail = (r.sha256 or "")[:16]
            avail = "[green]yes[/green]"
        elif r.available:
            where, detail, avail = "hub (download on first use)", r.reason or "", "[yellow]download[/yellow]"
        else:
            first = (r.reason or "").split("; looked in:")[0]
            offline = "downloads are off" + (r.reason or "").rsplit("downloads are off", 1)[-1] \
                if "downloads are off" in (r.reason or "") else ""
            detail = "\n".join([first, "looked in:"] + [f"• {p}" for p in r.looked] + ([offline] if offline else []))
            where, avail = "-", "[red]no[/red]"
        t.add_row(r.key, r.role, escape(r.id), avail, escape(where), escape(detail))  # paths, reasons: no markup
    console().print(t)


# ---- metrics ------------------------------------------------------------------------------------

def metric_catalogue(cfg) -> list[dict]:
    """Every registered metric family (built-in and entry point): what it declares about itself."""
    from mer_eval.registry import available, get_metric

    out = []
    for name, spec in sorted(available("metrics").items()):
        cls = get_metric(name)
        params = cfg.metric_params(name)
        fields = cls.Params.model_fields
        out.append({
            "family": name, "version": cls.version, "module": spec, "requires": cls.requires,
            "description": cls.description, "code_hash": cls.code_hash(),
            "outputs": [{"name": o.name, "higher_is_better": o.higher_is_better, "range": list(o.range),
                         "formula": o.formula, "primary": o.primary} for o in cls.outputs],
            "params": {k: {"value": params.get(k), "default": (None if f.default_factory is not None
                                                                 else f.default) if not f.is_required() else None,
                           "type": str(f.annotation)} for k, f in fields.items()},
            "models": [m.key for m in getattr(cls, "models", ())], "model_uses": getattr(cls, "model_uses", ""),
        })
    return out


@main.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_options
def metrics_cmd(as_json, config_path, sets):
    """List every metric family (built-in and entry point): outputs, parameters (set with
    --set metrics.FAMILY.KEY=VALUE), models, version."""
    cfg = load_cfg(config_path, sets)
    rows = metric_catalogue(cfg)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    t = Table(title="mer-eval metric families", show_lines=True)
    for c in ("family", "outputs", "parameters (this config)", "models", "version"):
        t.add_column(c, overflow="fold")
    for r in rows:
        outs = "\n".join(f"{o['name']} {'↑' if o['higher_is_better'] else '↓'}" for o in r["outputs"])
        params = "\n".join(f"{k} = {v['value']!r}" for k, v in r["params"].items()) or "-"
        t.add_row(f"{r['family']}\n[dim]{r['description']}[/dim]", outs, params,
                  r["model_uses"] or ", ".join(r["models"]) or "-", r["version"])
    console().print(t)


# ---- score --------------------------------------------------------------------------------------

class BatchSize(click.ParamType):
    """``--batch-size``: a whole number >= 1, or ``auto`` (anything else: a one-line usage error, exit 2)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        if text.isdigit() and int(text) >= 1:
            return int(text)
        raise OneLineUsageError(f"--batch-size: {value!r} is not a whole number >= 1 or auto")


PRECISION_FAMILIES = ("clip", "clap", "nli")  # the families with a ``precision`` parameter
PRECISION_CHOICES = ["fp32", "int8", "fp16", "bf16"]

@main.command()
@click.argument("input_path", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write evaluation files (default: the run folder itself).")
@click.option("--metrics", help="Comma-separated metric families (default: score.metrics in config).")
@click.option("--batch-size", type=BatchSize(), metavar="N|auto",
              help="Samples per model batch (sets score.batch_size; default 16), or auto: 16 on the CPU; on CUDA "
                   "each metric family starts at 128 and halves on an out-of-memory error, keeping the size "
                   "that worked.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]))
@click.option("--precision", type=click.Choice(PRECISION_CHOICES),
              help="Numeric precision of the CLIP, CLAP and NLI models (sets metrics.{clip,clap,nli}.precision; "
                   "default fp32): int8 = dynamic quantisation (CPU), fp16 (CUDA), bf16. Recorded in the results "
                   "and the fingerprint: runs at different precisions do not compare.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the result cache.")
@click.option("--engine", type=click.Choice(["local", "process", "ray"]),
              help="Who computes the chunks (sets score.engine; default local): process = a pool of --workers "
                   "processes here; ray = Ray Data over the Ray cluster (RAY_ADDRESS, or a local one; needs "
                   "`pip install 'mer-eval[ray]'`). The outputs are the same.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Worker processes or Ray actors for --engine process/ray (0 = one per CPU).")
@click.option("--label-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--transcripts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@limit_option
@click.option("--json", "as_json", is_flag=True,
              help="Print a machine-readable summary (JSON) on stdout; progress goes to stderr.")
@media_dir_option
@config_options
def score(input_path, out_dir, metrics, batch_size, device, no_cache, label_file, transcripts, limit, as_json,
          config_path, sets, media_dir=None, precision=None, engine=None, workers=None):
    """Score every sample of a run folder (ours or MER-Factory's)."""
    from mer_eval.discovery import discover
    from mer_eval.scoring import score_dataset
    from mer_eval.summary import print_score_summary, score_summary_json

    sets = list(sets)
    if batch_size:
        sets.append(f"score.batch_size={batch_size}")
    if device:
        sets.append(f"score.device={device}")
    if precision:
        sets += [f"metrics.{fam}.precision={precision}" for fam in PRECISION_FAMILIES]
    if engine:
        sets.append(f"score.engine={engine}")
    if workers is not None:
        sets.append(f"score.workers={workers}")
    cfg = load_cfg(config_path, sets)
    names = parse_metrics(metrics)
    con = console(stderr=as_json)
    from mer_eval.scoring import default_workers

    # a run scored by several processes is read by as many (a large MER-Factory root: its folders in workers)
    readers = default_workers(cfg.score.workers) if cfg.score.engine != "local" else 1
    ds = discover(Path(input_path), label_file=label_file, transcripts=transcripts, media_dir=media_dir,
                  workers=readers)
    ds = limit_datasets([ds], limit)[0] if limit else ds
    out = Path(out_dir) if out_dir is not None else (Path(input_path) if Path(input_path).is_dir()
                                                      else Path(input_path).parent)
    from mer_eval.scoring import EngineError
    from mer_eval.store import RunLockedError

    try:
        outcome = score_dataset(ds, out, cfg, metrics=names, use_cache=not no_cache,
                                progress=VERBOSITY["level"] >= 0, console=con)
    except (RunLockedError, EngineError) as e:  # one line, exit 1 (as generate)
        raise click.ClickException(str(e)) from None
    if as_json:
        summary = score_summary_json(outcome)
        if cfg.score.batch_size == "auto":  # the size each family ran with (also in run.json's score section)
            summary["batch_sizes"] = dict(outcome.section.batch_sizes)
            if outcome.section.batch_size_notes:
                summary["batch_size_notes"] = dict(outcome.section.batch_size_notes)
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        print_score_summary(con, outcome)


# ---- probe --------------------------------------------------------------------------------------

def run_probe(input_path: Path, cfg, out_dir: Optional[Path] = None, kinds: Optional[list[str]] = None,
              metrics: Optional[list[str]] = None, seed: int = 0, n_boot: int = 1000, label_file=None,
              transcripts=None, use_cache: bool = True, con=None, progress: bool = False,
              limit: Optional[int] = None, media_dir: Optional[Path] = None):
    """Make corrupted twins of INPUT's samples, score originals and twins with the same config into
    ``out_dir`` (default ``INPUT/mer-eval-probe``; the run's own files are never written), and measure per
    metric and kind how well the scores tell them apart. Returns (ProbeResult, out_dir)."""
    from mer_eval.discovery import Dataset, discover
    from mer_eval.registry import load_object
    from mer_eval.scoring import score_dataset
    from mer_eval.store import atomic_write_json

    corrupt = load_object("mer_eval.generators.corrupt:make_twins")
    kinds_all = load_object("mer_eval.generators.corrupt:KINDS")
    analyse = load_object("mer_eval.reports.probe:analyse")
    probe_dir_name = load_object("mer_eval.reports.probe:PROBE_DIR")
    probe_json = load_object("mer_eval.reports.probe:PROBE_JSON")
    ds = discover(Path(input_path), label_file=label_file, transcripts=transcripts, media_dir=media_dir)
    ds = limit_datasets([ds], limit)[0] if limit else ds
    # a sample generation failed on has no annotation: no original to corrupt, and no good annotation to set
    # against the twins (counted as one, it would rank last and pull every pooled AUROC down)
    left_out = {s.id: f"generate failed, no annotation ({s.generation_error})" for s in ds.samples
                if s.generation_error}
    if left_out:
        ds = Dataset(kind=ds.kind, root=ds.root, samples=[s for s in ds.samples if not s.generation_error],
                     notes=list(ds.notes), label_file=ds.label_file)
    if not ds.samples:
        raise click.ClickException(f"{input_path}: no samples to probe" + (
            f" ({len(left_out)} that generation failed on: no annotation)" if left_out else ""))
    kinds = list(kinds or kinds_all)
    twins, skipped = corrupt(ds.samples, tuple(kinds), seed=seed)
    out = Path(out_dir) if out_dir else (Path(input_path) if Path(input_path).is_dir()
                                         else Path(input_path).parent) / probe_dir_name
    both = Dataset(kind=ds.kind, root=ds.root, samples=list(ds.samples) + [t.sample for t in twins],
                   notes=list(ds.notes), label_file=ds.label_file)
    outcome = score_dataset(both, out, cfg, metrics=metrics, use_cache=use_cache, progress=progress, console=con)
    res = analyse(outcome.frame(), twins, [s.id for s in ds.samples], kinds, skipped, n_boot=n_boot, seed=seed)
    res.meta = {"input": str(Path(input_path).resolve()), "seed": seed, "n_boot": n_boot,
                "composite_version": cfg.score.composite, "config_hash": cfg.hash(),
                "metric_families": list(outcome.families), "tool_version": __version__, "left_out": left_out}
    atomic_write_json(out / probe_json, res.to_dict())
    return res, out


@main.command()
@click.argument("input_path", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where twins' scores and probe.json go (default: RUN/mer-eval-probe).")
@click.option("--kinds", help="Comma-separated corruption kinds (default: flip,swap,au,degen,generic,"
                              "transcript,drop).")
@click.option("--metrics", help="Comma-separated metric families (default: score.metrics in config).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the corruptions and bootstrap.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(0, 100000), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0: none).")
@click.option("--all-metrics", is_flag=True, help="Show every output metric, not only the primary ones.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the result cache.")
@click.option("--label-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--transcripts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@limit_option
@media_dir_option
@config_options
def probe(input_path, out_dir, kinds, metrics, seed, n_boot, all_metrics, no_cache, label_file, transcripts,
          limit, config_path, sets, media_dir=None):
    """Meta-evaluate the metrics on INPUT: AUROC of originals vs corrupted twins, per metric and kind."""
    from mer_eval.registry import get_metric, load_object

    cfg = load_cfg(config_path, sets)
    kind_list = [k.strip() for k in kinds.split(",")] if kinds else None
    names = parse_metrics(metrics)
    con = console()
    try:
        res, out = run_probe(input_path, cfg, out_dir, kind_list, names, seed, n_boot, label_file, transcripts,
                             use_cache=not no_cache, con=con, progress=VERBOSITY["level"] >= 0, limit=limit,
                             media_dir=media_dir)
    except (ValueError, KeyError) as e:
        raise click.UsageError(str(e)) from None
    primary = None
    if not all_metrics:
        primary = []
        for fam in (names or cfg.score_metrics()):
            primary += [o.name for o in get_metric(fam).outputs if o.primary]
    load_object("mer_eval.reports.probe:print_rich")(con, res, primary)
    left_out = (res.meta or {}).get("left_out") or {}
    if left_out:
        con.print(f"  {len(left_out)} sample(s) left out, generation failed on them (no annotation to probe): "
                  + ", ".join(list(left_out)[:5]) + (" …" if len(left_out) > 5 else ""), highlight=False,
                  markup=False)
    con.print(f"probe.json: [bold]{(out / 'probe.json').resolve()}[/bold]")


# ---- cache --------------------------------------------------------------------------------------

@main.group("cache")
def cache_grp():
    """The content-addressed result cache (models' outputs, metric results)."""


def _cache_dir(config_path, sets) -> Optional[Path]:
    cfg = load_cfg(config_path, sets)
    return Path(cfg.cache.dir) if cfg.cache.dir else None


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@cache_grp.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_options
def cache_info_cmd(as_json, config_path, sets):
    """Where the cache is, how many entries, how big."""
    from mer_eval.cache import cache_info

    info = cache_info(_cache_dir(config_path, sets))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if not info["exists"]:
        click.echo(f"cache: {info['path']} (empty: no file yet)")
        return
    kinds = ", ".join(f"{v['entries']} {k}" for k, v in sorted(info["by_kind"].items())) or "none"
    click.echo(f"cache: {info['path']}\nentries: {info['entries']} ({kinds})\nsize: {_human_bytes(info['bytes'])}"
               + (f"\nerror: {info['error']}" if info.get("error") else ""))


@cache_grp.command("clear")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@config_options
def cache_clear_cmd(yes, config_path, sets):
    """Delete every cached entry."""
    from mer_eval.cache import cache_clear, cache_info

    d = _cache_dir(config_path, sets)
    info = cache_info(d)
    if not info["exists"]:
        click.echo(f"cache: {info['path']} is already empty")
        return
    if not yes:
        click.confirm(f"delete {info['entries']} entries ({_human_bytes(info['bytes'])}) in {info['path']}?",
                      abort=True)
    cache_clear(d)
    click.echo(f"cleared {info['entries']} entries ({_human_bytes(info['bytes'])}) from {info['path']}")


# ---- demo ---------------------------------------------------------------------------------------

def examples_dir() -> Path:
    env = os.environ.get("MER_EVAL_EXAMPLES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "examples"
    if here.is_dir():
        return here
    raise click.ClickException("bundled examples/ not found (run from a source checkout or set MER_EVAL_EXAMPLES)")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("mer-eval-demo"),
              show_default=True, help="Where the demo writes its runs and report.")
@config_options
def demo(out_dir, config_path, sets):
    """Validate, generate, score and report on the bundled real example data (offline)."""
    from mer_eval.app.demo import run_demo

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = load_cfg(config_path, sets)
    code = run_demo(console(), examples_dir(), Path(out_dir), cfg)
    sys.exit(code)


if __name__ == "__main__":
    main()
