"""Benchmark `mer-eval score` on real media (not a test: prints figures measured in one run).

Measures, over the same samples and the same loaded models:
  1. batched scoring vs a one-sample-at-a-time loop        (target >= 5x)
  2. wall time / pure model time of the batched run          (target <= 1.10)
  3. re-score of an unchanged run (cache) / first run        (target <= 0.05)

Models: whatever resolves offline (Whisper baseline for ASR, MiniLM for semantic agreement, MediaPipe for
AU-F1) plus, when `--tiny-models` is given, tiny random-weight CLIP / CLAP / NLI models built on the spot so
the model-metric code paths are timed too (their scores mean nothing; their speed-ups are real).

Usage: python bench/score_bench.py [--data ../shared/data] [--n 24] [--tiny-models]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tiny-models", action="store_true")
    ap.add_argument("--real-size", action="store_true",
                    help="random-weight CLIP ViT-B-32 / BERT-base NLI / CLAP HTSAT: real compute, meaningless scores")
    ap.add_argument("--metrics", default="text_quality,label_agreement,cross_modal,au_f1,asr_wer,clip,clap,nli")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2

    from mer_eval.config import load_config
    from mer_eval.scoring import score_dataset

    work = Path(tempfile.mkdtemp(prefix="mer-eval-bench-"))
    os.environ["MER_EVAL_CACHE_DIR"] = str(work / "cache")
    sets = [f"score.batch_size={args.batch_size}", "score.device=cpu"]
    if args.tiny_models:
        sys.path.insert(0, str(REPO / "tests"))
        import tiny_models  # noqa: E402  (test helper that builds tiny random-weight models)

        for key, builder in (("clip", "build_open_clip"), ("clap", "build_clap"), ("nli", "build_nli")):
            fn = getattr(tiny_models, builder, None)
            if fn is not None:
                sets.append(f"models.paths.{key}={fn(work / key)}")
    if args.real_size:
        sets += build_real_size(work)
    metrics = [m for m in args.metrics.split(",") if m]
    ds = build_samples(args.data, args.n)
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
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
