"""TextQuality: hand-computed values, real MER-Factory summaries, CJK text, missing summary."""

from __future__ import annotations

import pytest

from mer_eval.metric import ScoreContext
from mer_eval.metrics.text_quality import TextQuality, english_check, mattr
from mer_eval.schema import Annotation, Sample, Status
from mer_eval.domain.text import words


def _sample(sid: str, summary) -> Sample:
    return Sample(id=sid, annotation=Annotation(final_summary=summary))


def _by_name(results):
    return {r.metric: r for r in results}


def test_hand_computed_short_text():
    # tokens: the cat sat on the mat the cat sat (9)
    m = TextQuality({"mattr_window": 5, "repetition_n": 3})
    r = _by_name(m.score([_sample("a", "The cat sat on the mat. The cat sat!")])["a"])
    assert r["distinct1"].value == pytest.approx(5 / 9)  # the cat sat on mat
    assert r["distinct2"].value == pytest.approx(6 / 8)  # the-cat, cat-sat repeat once each
    assert r["repetition_rate"].value == pytest.approx(1 / 7)  # only "the cat sat" repeats among 7 trigrams
    # windows of 5: 4/5, 5/5, 4/5, 4/5, 4/5
    assert r["mattr"].value == pytest.approx(0.84)
    assert r["mattr"].details["mattr_method"] == "mattr"
    assert r["summary_words"].value == 9
    import textstat

    assert r["fkgl"].status == Status.ok
    assert r["fkgl"].value == pytest.approx(textstat.flesch_kincaid_grade("The cat sat on the mat. The cat sat!"))
    assert r["flesch_reading_ease"].value == pytest.approx(
        textstat.flesch_reading_ease("The cat sat on the mat. The cat sat!"))


def test_mattr_falls_back_to_ttr_and_distinct2_needs_two_tokens():
    assert mattr(["a", "b", "a"], 50) == (pytest.approx(2 / 3), "ttr")
    m = TextQuality({"mattr_window": 50})
    r = _by_name(m.score([_sample("one", "Happy.")])["one"])
    assert r["distinct1"].value == 1.0
    assert r["mattr"].details["mattr_method"] == "ttr"
    assert r["distinct2"].status == Status.not_applicable and r["distinct2"].value is None
    assert r["repetition_rate"].status == Status.not_applicable


def test_no_summary_abstains_where_promised_else_not_applicable():
    from mer_eval.schema import SampleType

    m = TextQuality({})
    for summary in (None, "   "):
        # a mer sample promises a final summary: an empty one is not answering (a gate rule fails on it)
        res = m.score([_sample("empty", summary)])["empty"]
        assert len(res) == len(TextQuality.outputs)
        assert all(r.status == Status.abstained and r.value is None for r in res)
        assert res[0].reason == ("the annotation is empty (no summary, no description)" if summary is None
                                 else "a mer annotation promises a final summary; it is empty")
        # an audio annotation has none to give: a gap, not a defect
        a = Sample(id="a", type=SampleType.audio, annotation=Annotation(final_summary=summary, transcript="hi"))
        res = m.score([a])["a"]
        assert all(r.status == Status.not_applicable and r.value is None for r in res)
        assert "audio annotations carry no final summary" in res[0].reason


def test_readability_undefined_is_not_a_grade():
    """No word with a syllable: textstat gives 0.0 for both, a grade nobody measured; the metric says why."""
    import textstat

    text = "Hmm hmm shh hmm."
    assert textstat.flesch_kincaid_grade(text) == 0.0 and textstat.flesch_reading_ease(text) == 0.0
    r = _by_name(TextQuality({}).score([_sample("h", text)])["h"])
    for name in ("fkgl", "flesch_reading_ease"):
        assert r[name].status == Status.not_applicable and r[name].value is None
        assert "readability is undefined" in r[name].reason
    assert r["summary_words"].value == 4.0  # the rest is measured


def _ngram_rep(tokens, n):
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams)


def test_real_mer_factory_summaries(shared_data):
    from mer_eval.discovery import discover

    ds = discover(shared_data / "annotations-mer-factory")
    with_summary = [s for s in ds.samples if s.annotation.final_summary]
    assert len(with_summary) >= 5
    m = TextQuality({"mattr_window": 50, "repetition_n": 3}, ScoreContext())
    out = m.score(ds.samples)
    for s in ds.samples:
        r = _by_name(out[s.id])
        assert set(r) == set(TextQuality.output_names())
        if not s.annotation.final_summary:
            assert all(x.status == Status.not_applicable for x in r.values())
            continue
        toks = words(s.annotation.final_summary)
        assert r["summary_words"].value == len(toks) > 100
        assert r["distinct1"].value == pytest.approx(len(set(toks)) / len(toks))
        assert r["repetition_rate"].value == pytest.approx(_ngram_rep(toks, 3))
        assert 0 < r["distinct1"].value < r["distinct2"].value <= 1
        assert r["distinct1"].value < r["mattr"].value < 1  # window TTR exceeds whole-text TTR
        assert r["fkgl"].status == Status.ok and 5 < r["fkgl"].value < 25
    gem = _by_name(out["gemini_merr"])
    # the gemini summary repeats little: check against an independent count
    assert gem["repetition_rate"].value < 0.1


def test_chinese_text_uses_characters(shared_data):
    from mer_eval.discovery import discover

    ds = discover(shared_data / "annotations-mer-factory").by_id()
    zh = ds["gemini_merr"].annotation.transcript  # 我哪知道啊？ 我也没有这方面的经验。 (real Chinese text)
    assert zh and english_check(zh) is not None
    m = TextQuality({"mattr_window": 50, "repetition_n": 3})
    r = _by_name(m.score([_sample("zh", zh)])["zh"])
    # 15 characters, 我 twice -> 14 distinct; 14 bigrams all distinct; 13 trigrams, none repeated
    assert r["summary_words"].value == 15
    assert r["distinct1"].value == pytest.approx(14 / 15)
    assert r["distinct2"].value == 1.0
    assert r["repetition_rate"].value == 0.0
    assert r["distinct1"].details["unit"] == "cjk_characters+latin_words"
    assert r["fkgl"].status == Status.not_applicable
    assert "textstat readability supports" in r["fkgl"].reason
    assert r["flesch_reading_ease"].status == Status.not_applicable


def test_cache_key_inputs_and_cache_hit(tmp_path):
    from mer_eval.cache import Cache

    cache = Cache(tmp_path / "c.sqlite")
    m = TextQuality({"mattr_window": 5}, ScoreContext(cache=cache))
    s = _sample("c", "one two three one two three four")
    first = m.score([s])["c"]
    second = TextQuality({"mattr_window": 5}, ScoreContext(cache=cache)).score([s])["c"]
    assert all(r.cached for r in second) and not any(r.cached for r in first)
    assert [r.value for r in first] == [r.value for r in second]
    assert m.cache_key_inputs(s) == {"final_summary": s.annotation.final_summary}


def _real_texts(shared_data, min_words: int = 1) -> list[str]:
    """Every string of at least ``min_words`` words in the real MER-Factory outputs, at any depth."""
    import json

    texts = []
    for f in sorted((shared_data / "annotations-mer-factory").glob("*.json")):
        stack = [json.loads(f.read_text(encoding="utf-8"))]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
            elif isinstance(x, str) and len(x.split()) >= min_words:
                texts.append(x)
    return texts


def test_ngram_counts_equal_the_plain_definitions_on_real_text(shared_data):
    """The metric counts n-grams as integer codes with numpy (:func:`ngram_counts`, long texts); the plain
    definitions (:func:`distinct_n`, :func:`repetition_rate`: sets of token tuples) are the reference. Real
    MER-Factory texts one by one (short and long), and all of them joined (~thousands of tokens, n up to 7, so the
    codes are re-ranked before they could overflow)."""
    import numpy as np

    from mer_eval.metrics.text_quality import distinct_n, ngram_counts, repetition_rate, token_ids

    texts = _real_texts(shared_data)
    joined = words(" ".join(texts))
    assert len(joined) ** 6 >= 2 ** 62  # the joined text reaches the re-ranking branch
    cases = [words(t) for t in texts] + [joined]
    assert sum(len(t) >= 64 for t in cases) >= 3  # the numpy path, not only the short one
    for toks in cases:
        ns = {1, 2, 3, 7}
        got = ngram_counts(toks, ns, token_ids(toks) if toks else np.zeros(0, dtype=np.int64))
        for n in ns:
            total, distinct = got[n]
            assert (distinct / total if total else None) == distinct_n(toks, n)
            assert ((total - distinct) / total if total else None) == repetition_rate(toks, n)


def test_readability_equals_textstat_on_real_text(shared_data):
    """fkgl and reading ease, computed from the kept syllable table and mer-eval's own word and sentence counts,
    equal textstat's public functions exactly on every real MER-Factory text (and on all of them joined)."""
    import textstat

    from mer_eval.metrics.text_quality import _syllable_table, readability

    assert _syllable_table()  # the fast path under test, not the word-by-word fallback
    texts = _real_texts(shared_data, min_words=3)
    assert len(texts) >= 20
    textstat.set_lang("en_US")
    for t in texts + [" ".join(texts)]:
        assert readability(t) == (textstat.flesch_kincaid_grade(t), textstat.flesch_reading_ease(t)), t[:80]


def test_syllable_table_equals_textstat_cmudict():
    """The kept table is textstat's own CMU count (vowels of the first pronunciation) for every word of the corpus
    textstat reads; a word the corpus lacks is not in it (pyphen counts it, as in textstat)."""
    from textstat.backend.utils._get_cmudict import get_cmudict

    from mer_eval.metrics.text_quality import _syllable_table, _word_syllables

    table = _syllable_table()
    cmu = get_cmudict("en_US")
    assert len(table) == sum(1 for p in cmu.values() if p) > 100_000
    for w, prons in cmu.items():
        if prons:
            assert table[w] == sum(1 for p in prons[0] if p[-1].isdigit()), w
    assert _word_syllables("happiness") == table["happiness"] == 3
    assert "qzxwvk" not in table and _word_syllables("qzxwvk") >= 1  # pyphen's count


def test_syllable_table_is_kept_keyed_by_the_corpus_and_rebuilt(tmp_path, monkeypatch):
    """Built once from textstat's dictionary and written under the models folder; read back without the
    dictionary; an unreadable file is built again; a changed corpus file (its key) gets a table of its own."""
    import nltk
    import textstat.backend.utils._get_cmudict as tg

    from mer_eval.metrics import text_quality as tq

    corpus = tmp_path / "nltk_data" / "corpora" / "cmudict" / "cmudict"
    corpus.parent.mkdir(parents=True)
    corpus.write_text("HELLO 1 HH AH0 L OW1\n", encoding="utf-8")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setattr(tq, "ensure_cmudict", lambda: ("test corpus", None))
    monkeypatch.setenv("MER_EVAL_ASSEMBLED_DIR", str(tmp_path / "models"))
    calls = []

    def fake_cmudict(lang):
        calls.append(lang)
        return {"hello": [["HH", "AH0", "L", "OW1"]], "bare": [], "strength": [["S", "T", "R", "EH1", "NG", "K", "TH"]]}

    monkeypatch.setattr(tg, "get_cmudict", fake_cmudict)
    key = tq._corpus_key()
    assert tq._load_syllable_table() == {"hello": 2, "strength": 1}  # "bare" has no pronunciation: pyphen's
    kept = tmp_path / "models" / "textstat-syllables" / f"{key}.json"
    assert kept.is_file() and calls == ["en_US"]

    def no_dictionary(lang):
        raise AssertionError("the dictionary was read although the table is kept")

    monkeypatch.setattr(tg, "get_cmudict", no_dictionary)
    assert tq._load_syllable_table() == {"hello": 2, "strength": 1}  # read from the file

    kept.write_bytes(b"\x00not JSON")
    monkeypatch.setattr(tg, "get_cmudict", fake_cmudict)
    assert tq._load_syllable_table() == {"hello": 2, "strength": 1} and len(calls) == 2  # built again
    assert tq._load_syllable_table() == {"hello": 2, "strength": 1} and len(calls) == 2
    kept.write_text('{"hello": "2"}', encoding="utf-8")  # JSON, but not a table of counts
    assert tq._load_syllable_table() == {"hello": 2, "strength": 1} and len(calls) == 3  # built again

    corpus.write_text("HELLO 1 HH AH0 L OW1\nWORLD 1 W ER1 L D\n", encoding="utf-8")
    assert tq._corpus_key() != key
    monkeypatch.setattr(tg, "get_cmudict", lambda lang: {"world": [["W", "ER1", "L", "D"]]})
    assert tq._load_syllable_table() == {"world": 1}
    assert len(list(kept.parent.glob("*.json"))) == 2
