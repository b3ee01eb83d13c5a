"""A large MER-Factory root read by worker processes (issue #12: discovery was ~0.4 ms a folder, serial, before
any sample was scored). On real MER-Factory outputs, with the folders a real root has (results, a real OpenFace
CSV, a peak frame, a folder without a result, an unreadable result, a link leading out), the parallel read gives
the same samples and the same notes, in the same order, as one process; as a list and as a compact store."""

from __future__ import annotations

import shutil

import pytest

from mer_eval import discovery, sample_store
from mer_eval.sample_store import SampleStore
from engine_compare import build_real_run


def _root(shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=17)
    csv = shared_data / "openface" / "OpenFace_Test.csv"
    if csv.is_file():
        shutil.copy(csv, root / "s0002" / "s0002.csv")
    faces = sorted((shared_data / "faces").glob("*.jpg"))
    if faces:
        shutil.copy(faces[0], root / "s0004" / "s0004_peak_frame.jpg")
    (root / "s0005" / "s0005_merr_data.json").write_text("{not json", encoding="utf-8")  # unreadable
    (root / "empty").mkdir()  # no MER-Factory result
    secret = tmp_path / "outside.json"
    secret.write_text("{}", encoding="utf-8")
    (root / "s0006" / "s0006_zz_au_analysis.json").symlink_to(secret)  # a link that leads out: skipped, a note
    return root


def _seen(ds):
    return [s.model_dump(mode="json") for s in ds.samples], list(ds.notes)


@pytest.mark.parametrize("compact", [False, True])
def test_parallel_read_gives_the_samples_and_notes_of_one_process(shared_data, tmp_path, monkeypatch, compact):
    root = _root(shared_data, tmp_path)
    if compact:
        monkeypatch.setattr(sample_store, "COMPACT_ABOVE", 4)
    one = discovery.discover(root)
    samples, notes = _seen(one)
    assert len(samples) == 16 and isinstance(one.samples, SampleStore) == compact
    assert any("empty" in n and "no MER-Factory result JSON" in n for n in notes)
    assert any("s0005" in n and "no readable MER-Factory result" in n for n in notes)  # s0005 left out
    assert any("s0006/s0006_zz_au_analysis.json: skipped, symlink leads outside" in n for n in notes)
    by_id = {s["id"]: s for s in samples}
    assert by_id["s0004"]["peak_frame_image"].endswith("s0004_peak_frame.jpg")
    if (shared_data / "openface" / "OpenFace_Test.csv").is_file():
        assert by_id["s0002"]["openface_csv"].endswith("s0002.csv")

    monkeypatch.setattr(discovery, "PARALLEL_ABOVE", 3)
    read_here = []
    real = discovery._read_mer_factory_folder
    monkeypatch.setattr(discovery, "_read_mer_factory_folder", lambda *a: read_here.append(a) or real(*a))
    two = discovery.discover(root, workers=2)
    assert read_here == [], "the folders were read in this process, not by the workers"
    assert isinstance(two.samples, SampleStore) == compact
    assert _seen(two) == (samples, notes)
    if compact:
        assert two.samples.ids == one.samples.ids
    # at or under the threshold, or with one worker, the folders are read here
    monkeypatch.setattr(discovery, "PARALLEL_ABOVE", 10_000)
    assert _seen(discovery.discover(root, workers=2)) == (samples, notes) and read_here
