"""Click commands ``generate`` and ``export`` (wired into ``mer_eval.cli`` by name)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _config_options(f):
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override one config key, e.g. --set generate.video_frames=8 (repeatable).")(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="YAML file with the same keys as configs/default.yaml.")(f)
    return f


def _load_cfg(config_path: Path | None, sets) -> object:
    from mer_eval.config import ConfigError, load_config

    try:
        return load_config(config_path, list(sets or []))
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


# MER-Factory's spellings (main.py: typer Enums, case-insensitive): --type AU|audio|video|MER|image,
# --task MERR|"Sentiment Analysis"; ours (emotion / sentiment) are accepted too
TYPE_CHOICES = ["mer", "au", "audio", "video", "image"]
TASK_SPELLINGS = {"emotion": "emotion", "merr": "emotion", "emotion recognition": "emotion",
                  "emotion_recognition": "emotion", "sentiment": "sentiment", "sentiment analysis": "sentiment",
                  "sentiment_analysis": "sentiment"}


def _task(ctx, param, value):
    if value is None:
        return None
    task = TASK_SPELLINGS.get(" ".join(str(value).lower().split()))
    if task is None:
        raise click.BadParameter(f"{value!r}: expected emotion (MER-Factory: MERR) or sentiment "
                                 "(MER-Factory: 'Sentiment Analysis')", ctx=ctx, param=param)
    return task


# MER-Factory's model options -> (our provider, what its model is called there)
MODEL_OPTIONS = {"chatgpt_model": "openai", "ollama_text_model": "ollama", "ollama_vision_model": "ollama",
                 "huggingface_model": "hf"}


def _model_overrides(provider: str | None, models: dict) -> tuple[str | None, list[str]]:
    """MER-Factory's --chatgpt-model / --ollama-*-model / --huggingface-model as our provider + its model."""
    given = {k: v for k, v in models.items() if v}
    if not given:
        return provider, []
    providers = {MODEL_OPTIONS[k] for k in given}
    names = {v for v in given.values()}
    if len(providers) > 1 or len(names) > 1:
        raise click.UsageError("one model per run: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                                   for k, v in given.items())
                               + " name different models (mer-eval asks one provider model for every text)")
    (prov,), (model,) = providers, names
    if provider is not None and provider != prov:
        raise click.UsageError(f"--provider {provider} and --{next(iter(given)).replace('_', '-')} "
                               f"(provider {prov}) disagree")
    return prov, [f"providers.{prov}.model={model}"]


@click.command()
@click.argument("input_path", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--type", "-t", "ptype", type=click.Choice(TYPE_CHOICES, case_sensitive=False), default=None,
              help="Processing type (MER-Factory's, any case): MER (default), AU, audio, video, image.")
@click.option("--task", "-tk", type=str, default=None, callback=_task, metavar="TASK",
              help="emotion (default; MER-Factory: MERR) or sentiment (MER-Factory: 'Sentiment Analysis').")
@click.option("--label-file", "-l", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV name,label (name = file stem): label-aware synthesis and ground_truth_label.")
@click.option("--threshold", "-th", type=click.FloatRange(0.0, 5.0), default=None,
              help="AU peak threshold (0-5, default 0.8).")
@click.option("--peak-distance", "--peak_dis", "-pd", "peak_distance", type=click.IntRange(min=8), default=None,
              help="Minimum frames between peaks (>= 8, default 15; MER-Factory: --peak_dis).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None,
              help="Samples processed at once (default 4).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="How the samples run (the same outputs): local (default, this process) or ray (a pool of Ray "
                   "actors: RAY_ADDRESS, else a local Ray; pip install 'mer-eval[ray]').")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Engine ray: actors (default 0: one per CPU of the cluster).")
@click.option("--provider", default=None,
              help="A registered provider: offline (default, no LLM), openai, ollama, gemini, hf, or a third "
                   "party's (entry point mer_eval.providers).")
@click.option("--prompts-file", "-pf", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON (or .yaml) mapping prompt names (synthesis_emotion, tone, ...: the templates in "
                   "mer_eval/generators/prompts) to replacement texts with ${field} placeholders; the run's "
                   "prompt hashes record them.")
@click.option("--chatgpt-model", "-cgm", default=None, help="MER-Factory's: provider openai with this model.")
@click.option("--ollama-text-model", "-otm", default=None, help="MER-Factory's: provider ollama with this model.")
@click.option("--ollama-vision-model", "-ovm", default=None,
              help="MER-Factory's: provider ollama with this model (one model for every text).")
@click.option("--huggingface-model", "-hfm", default=None,
              help="MER-Factory's: provider hf with this model (a model key, .gguf file or local folder).")
@click.option("--force", is_flag=True, help="Redo samples whose outputs are up to date.")
@click.option("--cache", "-ca", "use_cache", is_flag=True,
              help="MER-Factory's --cache: reuse up-to-date results and cached model answers. mer-eval does "
                   "both by default; this also turns the cache on when the config turned it off.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--silent", "-s", is_flag=True, help="Minimal output (MER-Factory's): no progress bars; only the "
                                                    "totals line and failed samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--check", is_flag=True, help="Only check the provider (key, server, model: one 4-token request) "
                                             "and exit: 0 ready, 3 not (one line says why).")
@click.option("--no-preflight", is_flag=True, help="Skip the provider check made before the first sample.")
@_config_options
def generate(input_path, out, ptype, task, label_file, threshold, peak_distance, concurrency, provider, force,
             no_progress, as_json, config_path, sets, engine=None, workers=None, check=False,
             no_preflight=False, prompts_file=None, use_cache=False, silent=False, chatgpt_model=None,
             ollama_text_model=None, ollama_vision_model=None, huggingface_model=None):
    """Turn the media in INPUT into MER-Factory-layout annotations in OUT (resumable).

    MER-Factory's spellings work too: --type MER|AU|audio|video|image, --task MERR|'Sentiment Analysis',
    --peak_dis, -t -tk -l -th -pd -c -pf -s -ca, --chatgpt-model / --ollama-*-model / --huggingface-model.

    Exit status: 0 every sample done or up to date; 1 some samples failed (listed; see error_logs/); 3 the
    provider check failed (nothing was run); 2 a usage error."""
    if use_cache and force:
        raise click.UsageError("--cache reuses results and --force redoes them: give one")
    if prompts_file is not None:  # a bad prompts file is named before any provider call or stage
        from mer_eval.generators.synthesis import load_prompts_file

        try:
            load_prompts_file(prompts_file)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    provider, model_sets = _model_overrides(provider, {
        "chatgpt_model": chatgpt_model, "ollama_text_model": ollama_text_model,
        "ollama_vision_model": ollama_vision_model, "huggingface_model": huggingface_model})
    if ptype is not None:
        ptype = ptype.lower()
    if silent:
        no_progress = True
    sets = list(sets or []) + model_sets + (["cache.enabled=true"] if use_cache else [])
    from mer_eval.generators.pipeline import run_generate
    from rich.console import Console

    from mer_eval.scoring import EngineError
    from mer_eval.store import RunLockedError

    overrides = {"type": ptype, "task": task, "threshold": threshold, "peak_distance": peak_distance,
                 "concurrency": concurrency, "provider": provider, "engine": engine, "workers": workers}
    sets = list(sets or []) + [f"generate.{k}={v}" for k, v in overrides.items() if v is not None]
    cfg = _load_cfg(config_path, sets)
    if provider is not None:
        from mer_eval.registry import available

        if provider not in available("providers"):
            raise click.UsageError(f"--provider {provider!r}: not a registered provider; known: "
                                   f"{', '.join(sorted(available('providers')))}")
    console = Console(stderr=True)
    from mer_eval.generators.pipeline import make_provider
    from mer_eval.generators.providers.base import PreflightError

    try:
        prov = make_provider(cfg)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if check or not no_preflight:
        try:
            info = prov.preflight()
        except PreflightError as e:
            click.echo(f"Error: provider check failed: {e}", err=True)
            raise SystemExit(PREFLIGHT_FAILED) from None
        if check:
            click.echo(json.dumps(info, indent=2) if as_json else
                       f"provider {info['provider']} ({info['model']}) ready"
                       + (f": answered {info['answer']!r} in {info['seconds']:g} s" if "seconds" in info else ""))
            return
    from mer_eval.generators.synthesis import prompts_override

    try:
        with prompts_override(prompts_file):
            summary = run_generate(input_path, out, cfg, label_file=label_file, force=force,
                                   progress=not no_progress and not as_json, console=console, provider=prov)
    except RunLockedError as e:
        raise click.ClickException(str(e)) from None
    except EngineError as e:  # engine ray: not installed, not reachable, or an actor died past its restarts
        click.echo(f"Error: {e}", err=True)
        raise SystemExit(ENGINE_FAILED) from None
    except (ValueError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_summary(Console(), summary, brief=silent)
    if summary["failed"]:
        raise SystemExit(SAMPLES_FAILED)


SAMPLES_FAILED = 1  # generate's exit status when any sample failed (the others are written)
PREFLIGHT_FAILED = 3  # the provider check failed: nothing was run
ENGINE_FAILED = 1  # engine ray could not run (one line; a rerun resumes)


def print_summary(console, s: dict, brief: bool = False) -> None:
    """The run's totals, provider use, failures, empty fields, fallbacks, flags and notes (``brief``: only
    the totals and the failures)."""
    console.print(f"[bold]generate[/bold] {s['input']} -> {s['out']} (provider {s['provider']}, "
                  f"model {s['model']}): {s['total']} samples, [green]{s['done']} done[/green], "
                  f"{s['skipped']} skipped (up to date), [red]{s['failed']} failed[/red] in {s['seconds']:.1f} s")
    ps = s.get("provider_stats") or {}
    if brief:
        for sid, f in sorted(s["failures"].items()):
            console.print(f"  [red]failed[/red] {sid}: {f['stage']}: {f['reason']}")
        return
    if ps.get("requests"):
        console.print(f"  provider requests {ps['requests']} ({ps.get('cache_hits', 0)} from the cache, "
                      f"{ps.get('retries', 0)} retries, {ps.get('errors', 0)} errors)")
    for sid, f in sorted(s["failures"].items()):
        console.print(f"  [red]failed[/red] {sid}: {f['stage']}: {f['reason']}")
    for sid, absent in sorted(s.get("absent", {}).items()):
        for fld, why in absent.items():
            console.print(f"  [yellow]empty[/yellow] {sid}.{fld}: {why}")
    for sid, fbs in sorted(s.get("fallbacks", {}).items()):
        for fb in fbs:
            console.print(f"  [yellow]fallback[/yellow] {sid}: {fb}")
    for sid, flags in sorted(s.get("flags", {}).items()):
        for flag, why in flags.items():
            console.print(f"  [red]flag[/red] {sid}.{flag}: {why}")
    for n in s.get("notes", []):
        console.print(f"  note: {n}")


def _export_formats() -> list[str]:
    from mer_eval.generators.export import FORMATS

    return list(FORMATS)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", required=True,
              type=click.Choice(sorted(_export_formats())),
              help="An export format registered in mer_eval.generators.export.FORMATS.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (sharegpt also writes dataset_info.json beside it; merr also a .txt).")
@click.option("--only-included", is_flag=True, help="Only samples the run's gate decision includes.")
def export(run_dir, fmt, output, only_included):
    """Export RUN as csv, ShareGPT (LLaMA-Factory), MERR coarse/fine (Emotion-LLaMA) or AU instructions."""
    from mer_eval.generators.export import ExportError, export_run

    try:
        res = export_run(run_dir, fmt, output, only_included=only_included)
    except ExportError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{res.format}: {res.written} samples -> {res.path}")
    for p in res.extra_files:
        click.echo(f"  also wrote {p}")
    for sid, why in sorted(res.skipped.items()):
        click.echo(f"  skipped {sid}: {why}")
    for sid, why in sorted(res.no_pseudo_label.items()):
        click.echo(f"  no pseudo-label for {sid}: {why}")
    counts = res.reason_counts()
    for what, label in (("skipped", "skipped"), ("no_pseudo_label", "without a pseudo-label")):
        for why, n in counts[what].items():
            click.echo(f"  {n} sample{'s' if n != 1 else ''} {label}: {why}")


COMMANDS = [generate, export]
