"""Benchmark `mer-eval score` on real media (not a test: prints figures measured in one run).

Measures, over the same samples and the same loaded models:
  1. batched scoring vs a one-sample-at-a-time loop        (target >= 5x)
  2. wall time / pure model time of the batched run          (target <= 1.10)
  3. re-score of an unchanged run (cache) / first run        (target <= 0.05)
  4. with --precision: fp32 vs int8 (dynamic quantisation) seconds of each tower (CLIP image / text, CLAP
     audio / text, NLI cross-encoder) on the same real inputs, as fp32/int8 ratios measured in this run, and
     how far int8's outputs are from fp32's (min cosine of the embeddings, max |logit difference|)
  5. with --encoder-efficiency: per family (CLIP, CLAP, NLI), the family's own batched ``score`` of the samples
     against its encoder passes alone: every pass the scoring made is recorded (inputs prepared, on the device)
     and replayed, timed with nothing around it. efficiency = replay seconds / score seconds = the pipeline's
     throughput as a share of the encoder's raw throughput at the same batches (issue #12: >= 0.80 on a GPU;
     on the CPU reported). ``--device cuda`` (or ``auto``) runs the whole bench on a GPU.

Models: whatever resolves offline (Whisper baseline for ASR, MiniLM for semantic agreement, MediaPipe for
AU-F1) plus, when `--tiny-models` is given, tiny random-weight CLIP / CLAP / NLI models built on the spot so
the model-metric code paths are timed too (their scores mean nothing; their speed-ups are real).

Usage: python bench/score_bench.py [--data ../shared/data] [--n 24] [--tiny-models | --real-size]
       [--precision [--precision-only]] [--encoder-efficiency] [--device cpu|cuda|auto] [--json-out PATH]

``--json-out PATH`` also writes every figure printed (unrounded, as measured), the settings, the machine and the
date to PATH as JSON (bench/all.py reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def build_samples(data: Path, n: int):
    """Real MER-Factory annotations, real speech (with and without reference transcript), real faces."""
    from mer_eval.discovery import discover
    from mer_eval.schema import Annotation

    samples = []
    mf = discover(data / "annotations-mer-factory").samples
    speech = discover(data / "speech-librivox").samples + discover(data / "speech-jfk").samples
    emo = discover(data / "speech-emotion").samples
    faces = [s for s in discover(data / "faces").samples if s.image is not None]
    pools = [p for p in (mf, speech, faces, emo) if p]
    i = 0
    while len(samples) < n and pools:
        src = pools[i % len(pools)]
        s = src[(i // len(pools)) % len(src)].model_copy(deep=True)
        s.id = f"{s.id}-{i}"
        donor = mf[i % len(mf)].annotation
        if s.annotation.is_empty():  # media-only sample: give it a real MER-Factory annotation to score
            s.annotation = Annotation(**donor.model_dump())
            if s.audio is not None and s.reference_transcript:
                s.annotation.transcript = s.reference_transcript.split(" ", 1)[-1]
        samples.append(s)
        i += 1
    from mer_eval.discovery import Dataset

    return Dataset(kind="bench", root=data, samples=samples)


def build_real_size(work: Path) -> list[str]:
    """Random-weight models with the real default architectures (open_clip ViT-B-32, a BERT-base NLI
    cross-encoder, CLAP HTSAT-unfused): their scores mean nothing, their compute cost is the real one."""
    import json

    import open_clip
    import torch
    from transformers import BertConfig, BertForSequenceClassification, ClapConfig, ClapModel

    sys.path.insert(0, str(REPO / "tests"))
    import tiny_models  # noqa: E402  (reuses its offline tokenizers)

    torch.manual_seed(0)
    d = work / "clip_vitb32"
    d.mkdir(parents=True)
    cfg = open_clip.get_model_config("ViT-B-32")
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), d / "open_clip_pytorch_model.bin")
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))

    nli = tiny_models.build_nli(work / "nli_src", max_positions=512)
    n_cfg = BertConfig.from_pretrained(nli)
    big = BertConfig(vocab_size=n_cfg.vocab_size, max_position_embeddings=512, num_labels=3,
                     id2label=n_cfg.id2label, label2id=n_cfg.label2id)  # BERT-base: 12 layers, 768 wide
    BertForSequenceClassification(big).eval().save_pretrained(nli)

    clap = tiny_models.build_clap(work / "clap_src")
    c_cfg = ClapConfig.from_pretrained(clap)
    text = c_cfg.text_config.to_dict()
    full = ClapConfig(text_config={k: text[k] for k in ("vocab_size", "pad_token_id", "bos_token_id",
                                                        "eos_token_id", "max_position_embeddings")})
    ClapModel(full).eval().save_pretrained(clap)
    return [f"models.paths.clip={d}", f"models.paths.nli={nli}", f"models.paths.clap={clap}"]


def _best_of(fn, repeat: int) -> tuple[float, object]:
    """(fastest wall seconds of ``repeat`` calls, the last result)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def precision_section(sets: list[str], data: Path, n_images: int, batch_size: int, repeat: int,
                      report=None) -> list[dict]:
    """fp32 vs int8 seconds per tower on real inputs: ``n_images`` face photos, the real MER-Factory texts
    (chunked as the metrics chunk them), LibriVox speech in 10 s windows, the NLI pairs of the MER-Factory
    outputs. Each tower is warmed up on its first two inputs, then timed on all (best of ``repeat``);
    ``report(row)`` is called as each row is measured."""
    import numpy as np

    from mer_eval.config import load_config
    from mer_eval.discovery import discover
    from mer_eval.domain.media import load_audio, load_image
    from mer_eval.metric import ScoreContext
    from mer_eval.metrics.clip_score import normalise, text_chunks
    from mer_eval.registry import get_metric

    faces = sorted(p for p in (data / "faces").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    images = [load_image(faces[i % len(faces)]) for i in range(n_images)]
    mf = [s for f in sorted((data / "annotations-mer-factory").glob("*.json")) if "au_analysis" not in f.name
          for s in discover(f).samples]
    texts = [t for s in mf for t in (s.annotation.visual_objective, s.annotation.visual_expression,
                                     s.annotation.audio_description, s.annotation.final_summary) if t]
    wavs = sorted((data / "speech-librivox").glob("*.wav"))
    rows: list[dict] = []

    def backend(fam: str, prec: str):
        cfg = load_config(sets=sets + [f"metrics.{fam}.precision={prec}", "score.device=cpu"])
        m = get_metric(fam)(cfg.metric_params(fam), ScoreContext(device="cpu", batch_size=batch_size, config=cfg))
        err = m.ensure_loaded()
        return (None, err) if err else (m, None)

    def towers(fam: str, m) -> dict:
        be = m._backend
        if fam == "clip":
            chunks = [c[1] for t in texts for c in text_chunks(t, be.encode, be.window)]
            return {"CLIP image": lambda n=None: be.image_features(images[:n]),
                    "CLIP text": lambda n=None: be.text_features(chunks[:n])}
        if fam == "clap":
            win = be.max_samples
            windows = [x[a: a + win] for x in (load_audio(w, sr=be.sr) for w in wavs)
                       for a in range(0, max(1, len(x) - win + 1), win)]
            chunks = [c[1] for t in texts for c in text_chunks(t, be.encode, be.window)]
            return {"CLAP audio": lambda n=None: be.audio_features(windows[:n]),
                    "CLAP text": lambda n=None: be.text_features(chunks[:n])}
        pairs = [(p[2], p[3]) for s in mf for p in m._pairs(s)]
        return {"NLI pairs": lambda n=None: be.logits(pairs[:n], batch_size)}

    for fam in ("clip", "clap", "nli"):
        if not any(x.startswith(f"models.paths.{fam}=") for x in sets):
            continue
        loaded = {p: backend(fam, p) for p in ("fp32", "int8")}
        if any(m is None for m, _ in loaded.values()):
            for p, (m, err) in loaded.items():
                if m is None:
                    rows.append({"tower": fam, "precision": p, "unavailable": err})
                    if report:
                        report(rows[-1])
            continue
        t32, t8 = towers(fam, loaded["fp32"][0]), towers(fam, loaded["int8"][0])
        for name in t32:
            res = {}
            for p, t in (("fp32", t32), ("int8", t8)):
                t[name](2)  # warm-up
                res[p] = _best_of(t[name], repeat)
            a, b = np.asarray(res["fp32"][1]), np.asarray(res["int8"][1])
            if name.startswith("NLI"):
                agree = {"max_abs_logit_diff": float(np.max(np.abs(a - b))),
                         "argmax_agreement": float(np.mean(a.argmax(1) == b.argmax(1)))}
            else:
                agree = {"min_cosine_fp32_int8": float(np.min(np.sum(normalise(a) * normalise(b), axis=1)))}
            rows.append({"tower": name, "inputs": int(a.shape[0]), "fp32_s": res["fp32"][0], "int8_s": res["int8"][0],
                         "fp32_over_int8": res["fp32"][0] / res["int8"][0], **agree})
            if report:
                report(rows[-1])
    return rows


ENCODER_EFFICIENCY_TARGET = 0.80  # issue #12: on a lent GPU, >= 80% of the encoder's raw batched throughput


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def encoder_efficiency_section(sets: list[str], ds, batch_size: int, device: str, repeat: int,
                               report=None) -> list[dict]:
    """Per family with weights in ``sets`` (models.paths.<fam>): its batched ``score`` of ``ds``'s samples (cache
    off, models loaded and warmed up first on two samples it applies to) against a replay of the encoder passes
    that score made (:func:`mer_eval.metrics.clip_score.encoder_forward` records them: inputs already prepared, on
    the device), best of ``repeat``. Rows: passes, inputs (rows of the passes), both times, both throughputs and
    ``efficiency`` = replay / score seconds."""
    from mer_eval.config import load_config
    from mer_eval.metric import ScoreContext
    from mer_eval.registry import get_metric

    rows: list[dict] = []
    for fam in ("clip", "clap", "nli"):
        if not any(x.startswith(f"models.paths.{fam}=") for x in sets):
            continue
        cfg = load_config(sets=[x for x in sets if not x.startswith("score.device=")]
                          + [f"score.device={device}", "cache.enabled=false"])
        m = get_metric(fam)(cfg.metric_params(fam), ScoreContext(device=device, batch_size=batch_size, config=cfg))
        err = m.ensure_loaded()
        if err:
            rows.append({"family": fam, "device": device, "unavailable": err})
        else:
            be = m._backend
            # warm-up on two samples the family applies to (kernels, allocator, lazy imports such as the audio
            # resampler's: once per process, not part of the throughput)
            m.score([x for x in ds.samples if m.missing_inputs(x) is None][:2] or ds.samples[:2])
            be.recorder = []
            _sync(device)
            t0 = time.perf_counter()
            results = m.score(ds.samples)
            _sync(device)
            score_s = time.perf_counter() - t0
            passes, be.recorder = be.recorder, None
            ok = sum(1 for rs in results.values() for r in rs if r.status.value == "ok")
            if not passes:
                rows.append({"family": fam, "device": device, "unavailable":
                             f"no encoder pass: none of the {len(ds.samples)} samples had {fam}'s inputs "
                             f"({ok} ok results)"})
            else:
                import torch

                def replay():
                    with torch.inference_mode():
                        for fn, inputs in passes:
                            fn(**inputs)
                    _sync(device)

                raw_s, _ = _best_of(replay, repeat)
                n_in = sum(int(next(iter(inputs.values())).shape[0]) for _, inputs in passes)
                rows.append({"family": fam, "device": device, "samples": len(ds.samples), "ok_results": ok,
                             "passes": len(passes), "inputs": n_in, "score_s": score_s, "encoder_s": raw_s,
                             "score_inputs_per_s": n_in / score_s, "encoder_inputs_per_s": n_in / raw_s,
                             "efficiency": raw_s / score_s})
        if report:
            report(rows[-1])
    return rows


def print_efficiency_row(r: dict) -> None:
    if "unavailable" in r:
        print(f"  {r['family']:<5} ({r['device']}): unavailable ({r['unavailable']})", flush=True)
        return
    print(f"  {r['family']:<5} ({r['device']}): {r['passes']} passes, {r['inputs']} inputs: "
          f"score {r['score_s']:.3f} s ({r['score_inputs_per_s']:.1f}/s), "
          f"encoder alone {r['encoder_s']:.3f} s ({r['encoder_inputs_per_s']:.1f}/s): "
          f"efficiency {r['efficiency']:.2f}   (target >= {ENCODER_EFFICIENCY_TARGET:.2f} on a GPU)", flush=True)


def print_precision_row(r: dict) -> None:
    if "unavailable" in r:
        print(f"  {r['tower']:<12} {r['precision']}: unavailable ({r['unavailable']})", flush=True)
        return
    agree = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k.startswith(("min_", "max_", "argmax_")))
    print(f"  {r['tower']:<12} {r['inputs']:>4} inputs: fp32 {r['fp32_s']:.3f} s, int8 {r['int8_s']:.3f} s, "
          f"fp32/int8 {r['fp32_over_int8']:.2f}x  ({agree})", flush=True)


def machine_info() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        info["loadavg_1_5_15"] = list(os.getloadavg())
    except OSError:
        info["loadavg_1_5_15"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


def write_json(path: Path | None, res: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tiny-models", action="store_true")
    ap.add_argument("--real-size", action="store_true",
                    help="random-weight CLIP ViT-B-32 / BERT-base NLI / CLAP HTSAT: real compute, meaningless scores")
    ap.add_argument("--metrics", default="text_quality,label_agreement,cross_modal,au_f1,asr_wer,clip,clap,nli")
    ap.add_argument("--precision", action="store_true",
                    help="also time fp32 vs int8 per tower (CLIP, CLAP, NLI) on the models given")
    ap.add_argument("--precision-only", action="store_true", help="only the precision section")
    ap.add_argument("--precision-images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2,
                    help="precision and encoder-efficiency sections: best of this many timed calls")
    ap.add_argument("--encoder-efficiency", action="store_true",
                    help="also time each family's score against its encoder passes alone (CLIP, CLAP, NLI)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto: where every model runs")
    ap.add_argument("--json-out", type=Path, default=None,
                    help="also write every figure printed, the settings and the machine to this JSON file")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    res: dict = {
        "bench": "score_bench",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"data": str(args.data), "n": args.n, "batch_size": args.batch_size,
                     "models": "real-size" if args.real_size else ("tiny" if args.tiny_models else "default"),
                     "tiny_models": args.tiny_models, "real_size": args.real_size, "metrics": args.metrics,
                     "precision": args.precision or args.precision_only, "precision_only": args.precision_only,
                     "precision_images": args.precision_images, "repeat": args.repeat, "device": args.device,
                     "encoder_efficiency": args.encoder_efficiency},
        "machine": machine_info(),
        "targets": {"batched_over_one_at_a_time": ">= 5", "wall_over_model": "<= 1.10",
                    "rescore_over_first": "<= 0.05"},
    }

    from mer_eval.config import load_config
    from mer_eval.scoring import score_dataset

    work = Path(tempfile.mkdtemp(prefix="mer-eval-bench-"))
    os.environ["MER_EVAL_CACHE_DIR"] = str(work / "cache")
    from mer_eval.scoring import resolve_device

    device = resolve_device(args.device)
    res["settings"]["device"] = device
    sets = [f"score.batch_size={args.batch_size}", f"score.device={device}"]
    if args.tiny_models:
        sys.path.insert(0, str(REPO / "tests"))
        import tiny_models  # noqa: E402  (test helper that builds tiny random-weight models)

        for key, builder in (("clip", "build_open_clip"), ("clap", "build_clap"), ("nli", "build_nli")):
            fn = getattr(tiny_models, builder, None)
            if fn is not None:
                sets.append(f"models.paths.{key}={fn(work / key)}")
    if args.real_size:
        sets += build_real_size(work)
    if args.precision or args.precision_only:
        import torch

        print(f"precision (CPU, {torch.get_num_threads()} torch threads; int8 = torch dynamic quantisation of "
              "nn.Linear):", flush=True)
        res["precision_rows"] = precision_section(sets, args.data, args.precision_images, args.batch_size,
                                                  args.repeat, report=print_precision_row)
        res["precision_note"] = "int8 = torch dynamic quantisation of nn.Linear; seconds are best of repeat calls"
        if args.precision_only:
            shutil.rmtree(work, ignore_errors=True)
            write_json(args.json_out, res)
            return 0
        print()
    metrics = [m for m in args.metrics.split(",") if m]
    ds = build_samples(args.data, args.n)
    if args.encoder_efficiency:
        print(f"encoder efficiency ({device}, batch size {args.batch_size}, {len(ds.samples)} samples; encoder "
              f"alone = best of {args.repeat} replays of the passes the score made):", flush=True)
        res["encoder_efficiency_rows"] = encoder_efficiency_section(sets, ds, args.batch_size, device, args.repeat,
                                                                    report=print_efficiency_row)
        res["targets"]["encoder_efficiency"] = f">= {ENCODER_EFFICIENCY_TARGET} on a GPU"
        print()
    print(f"{len(ds.samples)} samples, metrics: {', '.join(metrics)}")

    cfg_nocache = load_config(sets=sets + ["cache.enabled=false"])
    # warm-up: load every model once so both timed runs use the same loaded models
    score_dataset(type(ds)(kind=ds.kind, root=ds.root, samples=ds.samples[:2]), work / "warm", cfg_nocache,
                  metrics=metrics)

    t0 = time.perf_counter()
    batched = score_dataset(ds, work / "batched", cfg_nocache, metrics=metrics)
    t_batched = time.perf_counter() - t0

    cfg_one = load_config(sets=sets + ["cache.enabled=false", "score.batch_size=1"])
    t0 = time.perf_counter()
    for s in ds.samples:
        score_dataset(type(ds)(kind=ds.kind, root=ds.root, samples=[s]), work / "loop", cfg_one, metrics=metrics)
    t_loop = time.perf_counter() - t0

    cfg_cache = load_config(sets=sets)
    t0 = time.perf_counter()
    score_dataset(ds, work / "cached", cfg_cache, metrics=metrics)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = score_dataset(ds, work / "cached", cfg_cache, metrics=metrics)
    t_again = time.perf_counter() - t0

    ok = sum(1 for rs in batched.results.values() for r in rs if r.status.value == "ok")
    total = sum(len(rs) for rs in batched.results.values())
    print(f"results ok: {ok}/{total}; model seconds by family: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(batched.model_seconds_by_family.items())))
    by_fam: dict = {}
    for rs in batched.results.values():
        for r in rs:
            fam = next((f for f, m in batched.families.items() if r.metric in m.output_names()), "composite")
            c = by_fam.setdefault(fam, {})
            c[r.status.value] = c.get(r.status.value, 0) + 1
    for fam, c in by_fam.items():
        print(f"  {fam:<16} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"batched run: {t_batched:.2f} s (model time {batched.model_seconds:.2f} s)")
    print(f"one-at-a-time loop: {t_loop:.2f} s")
    print(f"first cached-enabled run: {t_first:.2f} s; unchanged re-score: {t_again:.2f} s "
          f"(cache hits {again.section.cache_hits})")
    print()
    print(f"speed-up batched vs one-at-a-time: {t_loop / t_batched:.2f}x   (target >= 5x)")
    if batched.model_seconds > 0:
        print(f"wall / pure model time (batched): {t_batched / batched.model_seconds:.2f}   (target <= 1.10)")
    print(f"re-score unchanged / first run: {t_again / t_first:.3f}   (target <= 0.05)")
    res.update({
        "samples": len(ds.samples), "metrics": metrics, "results_ok": ok, "results_total": total,
        "model_seconds_by_family": dict(sorted(batched.model_seconds_by_family.items())),
        "status_counts_by_family": by_fam,
        "batched_s": t_batched, "model_s": batched.model_seconds, "one_at_a_time_s": t_loop,
        "first_cached_run_s": t_first, "rescore_s": t_again, "rescore_cache_hits": again.section.cache_hits,
        "batched_over_one_at_a_time": t_loop / t_batched,
        "wall_over_model": t_batched / batched.model_seconds if batched.model_seconds > 0 else None,
        "rescore_over_first": t_again / t_first,
    })
    shutil.rmtree(work, ignore_errors=True)
    write_json(args.json_out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
