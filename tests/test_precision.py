"""``precision`` (fp32 | int8 | fp16 | bf16) of the CLIP, CLAP and NLI metrics, with tiny random-weight models
built on disk (tests/tiny_models.py) and real inputs: the face photos of ../shared/data/faces and
examples/media, the speech of ../shared/data (LibriVox, JFK, emotional speech) and examples/media, and the
texts of the real MER-Factory outputs in ../shared/data/annotations-mer-factory.

Documented tolerance (int8 = torch dynamic quantisation of nn.Linear, against fp32, same weights, same inputs):

* CLIP / CLAP: |cos_int8 - cos_fp32| <= 0.03 per sample (measured on these models and inputs: open_clip
  0.0034, transformers CLIP 0.013, CLAP 0.0098), and the samples keep their order (Spearman >= 0.9);
* NLI (weights drawn wide, see :func:`build_nli_spread`): |logit_int8 - logit_fp32| <= 0.08 * (spread of the
  fp32 logits) (measured 0.053: 0.26 on a spread of 4.95, 736 pairs of real MER-Factory texts) and >= 98 % of the
  pairs keep their argmax label (measured 99.7 %: 2 of 736 flip); the rates move by at most 0.05.

bf16 (allowed on the CPU) is held to the same bounds. These are tiny models (width 32): the figures say the
quantised code path computes the same function, not what a real-size model loses; ``bench/score_bench.py
--real-size --precision`` measures speed and agreement on random-weight real-size architectures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mer_eval.config import load_config
from mer_eval.metric import ScoreContext
from mer_eval.schema import Annotation, Sample, SampleType, Status

from tiny_models import build_clap, build_hf_clip, build_nli, build_open_clip, one_torch_thread

pytest.importorskip("transformers")
pytest.importorskip("open_clip")

TOL_COS = 0.03
MIN_SPEARMAN = 0.9
TOL_LOGIT_REL = 0.08
MIN_ARGMAX_AGREE = 0.98
TOL_RATE = 0.05
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def data() -> Path:
    d = REPO.parent / "shared" / "data"
    if not d.is_dir():
        pytest.skip("../shared/data is not present")
    return d


def build_nli_spread(root: Path) -> Path:
    """The tiny NLI model with weights drawn wider (initializer_range 0.3): its logits differ from pair to
    pair by more than rounding, so agreement is a real check (the default 0.02 gives near-constant logits)."""
    from transformers import BertConfig, BertForSequenceClassification
    import torch

    d = build_nli(root, name="nli_spread")
    cfg = BertConfig.from_pretrained(d)
    cfg.initializer_range = 0.3
    torch.manual_seed(1)
    BertForSequenceClassification(cfg).eval().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-precision")
    return {"open_clip": build_open_clip(root), "hf": build_hf_clip(root), "clap": build_clap(root),
            "nli": build_nli_spread(root)}


def mf_samples(data: Path) -> list[Sample]:
    from mer_eval.discovery import discover

    return [s for f in sorted((data / "annotations-mer-factory").glob("*.json")) if "au_analysis" not in f.name
            for s in discover(f).samples]


def texts(data: Path) -> list[str]:
    out = []
    for s in mf_samples(data):
        a = s.annotation
        out += [t for t in (a.visual_objective, a.visual_expression, a.audio_description, a.final_summary) if t]
    return out


def image_samples(data: Path) -> list[Sample]:
    ims = [p for p in sorted((data / "faces").iterdir()) if p.suffix.lower() in (".jpg", ".png")]
    ims += sorted((REPO / "examples" / "media").glob("*.jpg"))
    ts = texts(data)
    return [Sample(id=f"img{i}", type=SampleType.image, image=p, annotation=Annotation(image_description=ts[i % len(ts)]))
            for i, p in enumerate(ims)]


def audio_samples(data: Path) -> list[Sample]:
    aud = [data / "speech-jfk" / "jfk.flac"] + sorted((data / "speech-librivox").glob("*.wav"))
    aud += sorted((data / "speech-emotion").glob("*.wav"))[:12] + sorted((REPO / "examples" / "media").glob("*.wav"))
    tones = [s.annotation.audio_description for s in mf_samples(data) if s.annotation.audio_description]
    ts = tones + texts(data)
    return [Sample(id=f"aud{i}", type=SampleType.audio, audio=p, annotation=Annotation(audio_description=ts[i % len(ts)]))
            for i, p in enumerate(aud)]


def make(family: str, sets: list[str], precision: str, device: str = "cpu", cache=None):
    from mer_eval.registry import get_metric

    cfg = load_config(sets=sets + [f"metrics.{family}.precision={precision}"])
    return get_metric(family)(cfg.metric_params(family),
                              ScoreContext(device=device, batch_size=8, config=cfg, cache=cache))


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def values(res, metric: str, ids) -> np.ndarray:
    out = []
    for i in ids:
        r = next(x for x in res[i] if x.metric == metric)
        assert r.status == Status.ok, (i, r.reason)
        out.append(r.value)
    return np.array(out)


def n_quantised(model) -> int:
    import torch

    return sum(1 for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))


def check_recorded(res, ids, metric: str, precision: str):
    for i in ids:
        r = next(x for x in res[i] if x.metric == metric)
        assert r.params["precision"] == precision and r.details["precision"] == precision
        if precision == "int8":
            assert r.details["quantised_linear_layers"] > 0


CLIP_SETS = {"open_clip": lambda t: [f"models.paths.clip={t['open_clip']}"],
             "transformers": lambda t: ["metrics.clip.backend=transformers", f"models.paths.clip-hf={t['hf']}"]}


@pytest.mark.parametrize("backend", ["open_clip", "transformers"])
def test_clip_int8_agrees_with_fp32_on_real_images(tiny, data, backend):
    ss = image_samples(data)
    ids = [s.id for s in ss]
    assert len(ss) >= 10
    sets = CLIP_SETS[backend](tiny)
    m32, m8 = make("clip", sets, "fp32"), make("clip", sets, "int8")
    a, b = m32.score(ss), m8.score(ss)
    ca, cb = values(a, "clip_image_cosine", ids), values(b, "clip_image_cosine", ids)
    assert np.max(np.abs(ca - cb)) <= TOL_COS
    assert spearman(ca, cb) >= MIN_SPEARMAN
    assert not np.array_equal(ca, cb)  # int8 really ran: the numbers are not the fp32 ones
    assert n_quantised(m8._backend.model) > 0 and n_quantised(m32._backend.model) == 0
    check_recorded(b, ids, "clip_image_score", "int8")
    check_recorded(a, ids, "clip_image_score", "fp32")
    # CLIPScore is still 2.5 * max(cos, 0) of the int8 cosine
    sb = values(b, "clip_image_score", ids)
    assert np.allclose(sb, 2.5 * np.maximum(cb, 0.0))


def test_clip_bf16_on_cpu_agrees_with_fp32(tiny, data):
    import torch

    ss = image_samples(data)[:8]
    ids = [s.id for s in ss]
    sets = CLIP_SETS["open_clip"](tiny)
    a = make("clip", sets, "fp32").score(ss)
    m = make("clip", sets, "bf16")
    b = m.score(ss)
    ca, cb = values(a, "clip_image_cosine", ids), values(b, "clip_image_cosine", ids)
    assert np.max(np.abs(ca - cb)) <= TOL_COS and not np.array_equal(ca, cb)
    assert next(m._backend.model.parameters()).dtype == torch.bfloat16
    check_recorded(b, ids, "clip_image_score", "bf16")


def test_clap_int8_agrees_with_fp32_on_real_audio(tiny, data):
    ss = audio_samples(data)
    ids = [s.id for s in ss]
    assert len(ss) >= 10
    sets = [f"models.paths.clap={tiny['clap']}"]
    m32, m8 = make("clap", sets, "fp32"), make("clap", sets, "int8")
    a, b = m32.score(ss), m8.score(ss)
    ca, cb = values(a, "clap_audio_score", ids), values(b, "clap_audio_score", ids)
    assert np.max(np.abs(ca - cb)) <= TOL_COS
    assert spearman(ca, cb) >= MIN_SPEARMAN
    assert not np.array_equal(ca, cb)
    assert n_quantised(m8._backend.model) > 0
    check_recorded(b, ids, "clap_audio_score", "int8")


def test_nli_int8_agrees_with_fp32_on_real_texts(tiny, data):
    ss = mf_samples(data)
    sets = [f"models.paths.nli={tiny['nli']}"]
    m32, m8 = make("nli", sets, "fp32"), make("nli", sets, "int8")
    assert m32.ensure_loaded() is None and m8.ensure_loaded() is None
    pairs = [(p[2], p[3]) for s in ss for p in m32._pairs(s)]
    assert len(pairs) > 100
    la, lb = m32._backend.logits(pairs, 8), m8._backend.logits(pairs, 8)
    spread = float(la.max() - la.min())
    assert spread > 0.5, "the logits barely vary: agreement would be no check"
    assert float(np.max(np.abs(la - lb))) <= TOL_LOGIT_REL * spread
    assert not np.array_equal(la, lb)
    agree = float(np.mean(la.argmax(1) == lb.argmax(1)))
    assert agree >= MIN_ARGMAX_AGREE
    assert len(set(la.argmax(1).tolist())) >= 2  # the labels vary, so agreement means something
    ids = [s.id for s in ss]
    a, b = m32.score(ss), m8.score(ss)
    for metric in ("nli_entail_rate", "nli_contra_rate", "nli_consistency_score"):
        assert np.max(np.abs(values(a, metric, ids) - values(b, metric, ids))) <= TOL_RATE
    check_recorded(b, ids, "nli_consistency_score", "int8")


def test_precision_the_device_cannot_run_is_unavailable_never_fp32(tiny, data):
    ss = image_samples(data)[:2]
    sets = CLIP_SETS["open_clip"](tiny)
    r = make("clip", sets, "fp16", device="cpu").score(ss)
    assert all(x.status == Status.unavailable for x in r[ss[0].id])
    assert "fp16 runs on CUDA only" in r[ss[0].id][0].reason
    # int8 is CPU-only: asked for on CUDA it says so (checked before any CUDA call; no GPU needed)
    for fam, sets_, s in (("clip", sets, ss[0]), ("nli", [f"models.paths.nli={tiny['nli']}"], mf_samples(data)[0]),
                          ("clap", [f"models.paths.clap={tiny['clap']}"], audio_samples(data)[0])):
        r = make(fam, sets_, "int8", device="cuda").score([s])[s.id]
        assert all(x.status == Status.unavailable for x in r), fam
        assert "int8" in r[0].reason and "CPU only" in r[0].reason
    with pytest.raises(Exception, match="precision"):
        load_config(sets=["metrics.clip.precision=int4"])


def test_cache_never_serves_fp32_results_for_int8(tiny, data, tmp_path):
    from mer_eval.cache import Cache

    ss = image_samples(data)[:3]
    sets = CLIP_SETS["open_clip"](tiny)
    first = make("clip", sets, "fp32", cache=Cache(tmp_path / "c")).score(ss)
    again = make("clip", sets, "fp32", cache=Cache(tmp_path / "c")).score(ss)
    q = make("clip", sets, "int8", cache=Cache(tmp_path / "c")).score(ss)
    for s in ss:
        assert not any(r.cached for r in first[s.id]) and all(r.cached for r in again[s.id])
        assert not any(r.cached for r in q[s.id])
        assert all(r.params["precision"] == "int8" for r in q[s.id])


# ---- the CLI: --precision in the results, the fingerprint, compare and regress --------------------------

@pytest.fixture(scope="module")
def runs(tiny, data, tmp_path_factory):
    """One real MER-Factory-layout run (score_fixtures.build_run: MER-Factory outputs with face photos as
    peak frames, LibriVox speech), its audio samples given the real tone descriptions of the MER-Factory
    outputs; scored by `mer-eval score` at fp32 twice and at int8 once."""
    from score_fixtures import build_run

    from mer_eval.cli import main

    root = tmp_path_factory.mktemp("precision-runs")
    run = build_run(data, root / "run")
    tones = [s.annotation.audio_description for s in mf_samples(data) if s.annotation.audio_description]
    for i, f in enumerate(sorted(run.glob("lv*/*_audio_analysis.json"))):
        d = json.loads(f.read_text(encoding="utf-8"))
        d["audio_analysis"] = {"transcript": d["audio_analysis"], "tone_description": tones[i % len(tones)]}
        f.write_text(json.dumps(d), encoding="utf-8")
    sets = [f"models.paths.clip={tiny['open_clip']}", f"models.paths.clap={tiny['clap']}",
            f"models.paths.nli={tiny['nli']}"]
    out = {}
    for name, extra in (("fp32", []), ("fp32b", ["--precision", "fp32"]), ("int8", ["--precision", "int8"])):
        args = ["score", str(run), "--out", str(root / name), "--metrics", "clip,clap,nli", "--device", "cpu",
                "--no-cache"] + extra
        for s in sets:
            args += ["--set", s]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        out[name] = root / name
    return out


def fingerprints(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())["score"]["fingerprints"]


def test_cli_precision_recorded_in_results_and_fingerprint(runs):
    from mer_eval.gates import read_scores

    df = read_scores(runs["int8"])
    ok = df[df.status == "ok"]
    assert set(ok.metric) >= {"clip_image_score", "clap_audio_score", "nli_consistency_score"}
    fa, fb, fc = fingerprints(runs["fp32"]), fingerprints(runs["fp32b"]), fingerprints(runs["int8"])
    for m in ("clip_image_score", "clip_image_cosine", "clap_audio_score", "nli_consistency_score",
              "nli_entail_rate"):
        assert fa[m] == fb[m]  # the default is fp32: --precision fp32 is the same run
        assert fa[m]["params_hash"] != fc[m]["params_hash"]
        assert {k: v for k, v in fa[m].items() if k != "params_hash"} == \
               {k: v for k, v in fc[m].items() if k != "params_hash"}  # only the parameters differ
    rows = [r for f in sorted(runs["int8"].glob("*/mer_eval_scores.json"))
            for r in json.loads(f.read_text())["results"]
            if r["metric"] in ("clip_image_score", "clap_audio_score", "nli_consistency_score") and r["status"] == "ok"]
    assert {r["metric"] for r in rows} == {"clip_image_score", "clap_audio_score", "nli_consistency_score"}
    assert all(r["params"]["precision"] == "int8" and r["details"]["precision"] == "int8" for r in rows)


def test_compare_and_regress_refuse_across_precisions(runs, tmp_path):
    from mer_eval.reports.commands import bless_cmd, compare_cmd, regress_cmd

    same = CliRunner().invoke(compare_cmd, [str(runs["fp32"]), str(runs["fp32b"])])
    assert same.exit_code == 0, same.output
    r = CliRunner().invoke(compare_cmd, [str(runs["fp32"]), str(runs["int8"])])
    assert r.exit_code == 2, r.output
    assert "NOT COMPARABLE" in r.output
    for m in ("clip_image_score", "clap_audio_score", "nli_consistency_score"):
        assert f"{m}: params_hash" in r.output
    assert "precision 'fp32' != 'int8'" in r.output
    base = tmp_path / "baseline.json"
    assert CliRunner().invoke(bless_cmd, [str(runs["fp32"]), "-o", str(base)]).exit_code == 0
    ok = CliRunner().invoke(regress_cmd, [str(runs["fp32b"]), "--baseline", str(base)])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(regress_cmd, [str(runs["int8"]), "--baseline", str(base)])
    assert bad.exit_code == 2, bad.output
    assert "precision 'fp32' != 'int8'" in bad.output
