"""The versioned, coverage-aware composite."""

from __future__ import annotations

import pytest

from mer_eval.composite import CompositeSpec, composite_metric_result
from mer_eval.schema import MetricResult, Status


def ok(metric, value, **details):
    return MetricResult.ok("s", metric, value, "1", details=details)


def na(metric, why="no audio"):
    return MetricResult.missing("s", metric, Status.not_applicable, why, "1")


@pytest.fixture
def spec():
    return CompositeSpec.load("mer-v1")


def test_spec_is_versioned_and_inverts_lower_is_better(spec):
    assert spec.version == "mer-v1"
    wer = spec.metrics["asr_wer"]
    assert wer.normalise(0.0) == 1.0 and wer.normalise(1.0) == 0.0 and wer.normalise(0.2) == pytest.approx(0.8)
    assert wer.normalise(3.0) == 0.0  # WER can exceed 1: clipped
    rep = spec.metrics["repetition_rate"]
    assert rep.normalise(0.0) == 1.0 and rep.normalise(0.3) == 0.0


def test_missing_metrics_are_left_out_and_weights_renormalised(spec):
    res = [ok("asr_wer", 0.2), ok("label_match", 1.0), na("clip_image_score"), na("au_f1")]
    c = spec.compute("s", res)
    w_wer, w_label = spec.metrics["asr_wer"].weight, spec.metrics["label_match"].weight
    expected = 100 * (w_wer * 0.8 + w_label * 1.0) / (w_wer + w_label)
    assert c.coverage == pytest.approx((w_wer + w_label) / spec.total_weight, abs=1e-4)
    if c.coverage >= spec.min_coverage:
        assert c.value == pytest.approx(expected, abs=1e-3)
        assert sum(c.weights.values()) == pytest.approx(1.0)
    else:
        assert c.value is None and c.flag == "below_min_coverage"
    assert "clip_image_score" in c.missing and c.missing["clip_image_score"].startswith("not_applicable")


def test_full_coverage_value(spec):
    res = [ok(name, m.best) for name, m in spec.metrics.items()]
    c = spec.compute("s", res)
    assert c.value == pytest.approx(100.0) and c.coverage == pytest.approx(1.0)
    res = [ok(name, m.worst) for name, m in spec.metrics.items()]
    assert spec.compute("s", res).value == pytest.approx(0.0)


def test_below_min_coverage_is_null_and_flagged(spec):
    c = spec.compute("s", [ok("distinct2", 0.9)])
    assert c.value is None and c.flag == "below_min_coverage"
    row = composite_metric_result(c)
    assert row.status == Status.not_applicable and row.value is None and "coverage" in row.reason


def test_nothing_counted_gives_no_composite(spec):
    c = spec.compute("s", [na("clip_image_score"), na("asr_wer")])
    assert c.value is None and c.flag == "no_metric_counted"


def test_self_au_evidence_does_not_count(spec):
    base = [ok("asr_wer", 0.1), ok("label_match", 1.0), ok("cross_modal_agreement", 1.0), ok("distinct2", 0.9)]
    c_self = spec.compute("s", base + [ok("au_f1", 1.0, au_source="self")])
    c_ind = spec.compute("s", base + [ok("au_f1", 1.0, au_source="openface")])
    assert "au_f1" in c_self.missing and "self" in c_self.missing["au_f1"]
    assert "au_f1" in c_ind.counted


def test_cer_substitutes_for_wer_on_cjk(spec):
    res = [na("asr_wer", "CJK text: WER not applicable"), ok("asr_cer", 0.1), ok("label_match", 1.0),
           ok("cross_modal_agreement", 1.0)]
    c = spec.compute("s", res)
    assert "asr_cer" in c.counted and c.counted["asr_cer"] == pytest.approx(0.9)


def test_dependent_evidence_does_not_count(spec):
    """A label match from a summary whose prompt contained the label is expected, not evidence."""
    base = [ok("asr_wer", 0.1), ok("cross_modal_agreement", 1.0), ok("distinct2", 0.9)]
    c = spec.compute("s", base + [ok("label_match", 1.0, independent=False, dependence="label-aware prompt")])
    assert "label_match" in c.missing and "label-aware prompt" in c.missing["label_match"]
    assert "label_match" not in c.counted


def test_a_misspelt_component_of_a_custom_composite_is_refused(tmp_path, examples):
    """Before, a custom composite weighing 'conclusion_consistancy' scored the real MER-Factory outputs with that
    component "not computed in this run" on every sample, renormalised away: llava's composite rose 81.0 -> 97.3."""
    import yaml
    from click.testing import CliRunner

    from mer_eval.cli import main
    from mer_eval.config import ConfigError, load_config

    data = yaml.safe_load((examples.parent / "configs" / "composite" / "mer-v2.yaml").read_text(encoding="utf-8"))
    data["version"] = "my-v1"
    data["metrics"]["conclusion_consistancy"] = data["metrics"].pop("conclusion_consistency")
    custom = tmp_path / "my.yaml"
    custom.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"composite my-v1 \(.*my.yaml\): no installed metric family writes "
                                          r"'conclusion_consistancy' \(did you mean conclusion_consistency"):
        load_config(sets=[f"score.composite={custom}"])
    r = CliRunner().invoke(main, ["score", str(examples / "mer-factory"), "--out", str(tmp_path / "run"),
                                  "--metrics", "text_quality,conclusion", "--set", f"score.composite={custom}"])
    assert r.exit_code == 2 and "conclusion_consistancy" in r.output
    assert not (tmp_path / "run").exists()  # refused before anything was scored
    with pytest.raises(ConfigError, match="bad value for 'score.composite': 'mer-v9'"):
        load_config(sets=["score.composite=mer-v9"])
    data["metrics"]["conclusion_consistency"] = data["metrics"].pop("conclusion_consistancy")
    custom.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_config(sets=[f"score.composite={custom}"]).score.composite == str(custom)  # spelt right: fine
