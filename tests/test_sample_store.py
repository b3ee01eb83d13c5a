"""Compact samples (issue #12, flat memory): a large run's samples are kept as compressed JSON and decoded per
chunk. On real MER-Factory outputs: the store gives back equal samples, scoring from it writes the same files
as from a list, and labels, transcripts and --media-dir still reach the samples."""

from __future__ import annotations

from mer_eval import sample_store
from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.sample_store import SampleStore, sample_ids
from mer_eval.scoring import score_dataset
from engine_compare import WEIGHT_FREE, WEIGHT_FREE_SETS, assert_same_outputs, build_real_run


def test_store_round_trips_real_samples(shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=12)
    samples = discover(root).samples
    assert isinstance(samples, list)  # small: a plain list
    store = SampleStore(samples)
    assert len(store) == 12 and store.ids == [s.id for s in samples] == sample_ids(store)
    assert list(store) == samples and store[3] == samples[3] and store[2:5] == samples[2:5]
    s = store[0]
    s.label = "changed"
    assert store[0].label != "changed"  # a copy: written back explicitly
    store[0] = s
    assert store[0].label == "changed" and store.ids[0] == s.id
    del store[1]
    assert len(store) == 11 and store.ids[1] == samples[2].id
    packed = sum(len(b) for b in store._blobs) / len(store)
    assert packed < 4000, packed  # compressed JSON, well under the objects' size


def test_zstd_and_zlib_packs_read_back_the_same(shared_data, tmp_path, monkeypatch):
    """Samples are packed with Zstandard (pyarrow's codec) where this pyarrow has it, else zlib; either blob reads
    back as the same sample, whichever codec this process would pack with."""
    samples = discover(build_real_run(shared_data, tmp_path / "run", n=8)).samples
    assert sample_store._zstd() is not None  # the pyarrow wheels carry Zstandard
    zs = [SampleStore.pack(s) for s in samples]
    assert all(b[:1] == sample_store._ZSTD for b in zs)
    with monkeypatch.context() as m:  # a pyarrow without Zstandard
        m.setattr(sample_store, "_zstd", lambda: None)
        zl = [SampleStore.pack(s) for s in samples]
        assert all(b[:1] == b"\x78" for b in zl)  # a zlib stream
        assert [SampleStore.unpack(b) for b in zl] == samples
    assert [SampleStore.unpack(b) for b in zs] == [SampleStore.unpack(b) for b in zl] == samples


def test_large_run_is_compact_and_scores_the_same(shared_data, tmp_path, monkeypatch):
    root = build_real_run(shared_data, tmp_path / "run", n=15)
    (root / "labels.csv").write_text("name,label\ns0003,happy\ns0007,sad\n", encoding="utf-8")
    cfg = load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS)
    as_list = discover(root)
    assert isinstance(as_list.samples, list)
    score_dataset(as_list, tmp_path / "list", cfg, metrics=WEIGHT_FREE + ["label_agreement"], chunk_size=4)
    monkeypatch.setattr(sample_store, "COMPACT_ABOVE", 5)
    compact = discover(root)
    assert isinstance(compact.samples, SampleStore)
    assert compact.samples.ids == [s.id for s in as_list.samples]
    labels = {s.id: s.label for s in compact.samples}
    assert labels["s0003"] == "happy" and labels["s0007"] == "sad"  # written back into the store
    assert list(compact.samples) == as_list.samples
    score_dataset(compact, tmp_path / "store", cfg, metrics=WEIGHT_FREE + ["label_agreement"], chunk_size=4)
    assert assert_same_outputs(tmp_path / "list", tmp_path / "store", compact.samples.ids) == 15


def test_transcripts_reach_a_compact_run(shared_data, tmp_path, monkeypatch):
    root = build_real_run(shared_data, tmp_path / "run", n=8)
    tr = tmp_path / "transcripts.csv"
    tr.write_text("name,transcript\ns0002,hello there\n", encoding="utf-8")
    monkeypatch.setattr(sample_store, "COMPACT_ABOVE", 3)
    ds = discover(root, transcripts=tr)
    assert isinstance(ds.samples, SampleStore)
    got = {s.id: s.reference_transcript for s in ds.samples}
    assert got["s0002"] == "hello there"
    assert sum(v is not None for v in got.values()) == 1


def test_media_dir_reaches_a_compact_run(shared_data, tmp_path, monkeypatch):
    """--media-dir fills media from DIR and writes the sample back (the same as with a list)."""
    from mer_eval.media_dir import apply_media_dir

    root = build_real_run(shared_data, tmp_path / "run", n=3)
    monkeypatch.setattr(sample_store, "COMPACT_ABOVE", 1)
    ds = discover(root)
    assert isinstance(ds.samples, SampleStore)
    before = [s.notes for s in ds.samples]
    apply_media_dir(ds, tmp_path)  # an empty DIR: every recorded path is "not found", with a note
    after = [s.notes for s in ds.samples]
    assert after != before and any(any("--media-dir" in x for x in notes) for notes in after)
