"""Per-sample cost is bounded (issue #12): very long texts are capped and flagged, huge images are downscaled on
decode, long audio is pitch-tracked in windows. Memory is measured in a fresh subprocess (peak RSS); nothing
here asserts a time."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.domain.text import CAP_JOIN, TEXT_CAP_CHARS, cap_text
from mer_eval.scoring import score_dataset

REPO = Path(__file__).resolve().parent.parent
WEIGHT_FREE = ["text_quality", "cross_modal", "abstention", "au_faithfulness"]


def _peak_rss_mib(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; (its peak RSS in MiB, its stdout)."""
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across fork + exec, so a child of a big pytest
    # process would report the parent's peak; VmHWM belongs to the new address space
    wrapper = code + ("\nfor line in open('/proc/self/status'):\n    if line.startswith('VmHWM:'):\n"
                      "        print('PEAK', int(line.split()[1]))\n")
    p = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    peak = next(int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("PEAK"))
    return peak / 1024, p.stdout


# ---- texts --------------------------------------------------------------------------------------

def test_cap_text_keeps_head_and_tail():
    short = "a" * 100
    assert cap_text(short) == (short, None)
    long = "h" * TEXT_CAP_CHARS + "t" * TEXT_CAP_CHARS
    capped, n = cap_text(long)
    assert n == 2 * TEXT_CAP_CHARS
    assert capped.startswith("h" * (TEXT_CAP_CHARS // 2)) and capped.endswith("t" * (TEXT_CAP_CHARS // 2))
    assert len(capped) == TEXT_CAP_CHARS + len(CAP_JOIN)


def test_long_summary_is_capped_and_flagged(shared_data, tmp_path):
    """A real MER-Factory output whose summary is blown up to ~5 MB by repeating its middle: scored with the
    weight-free metrics, every result of that sample says the summary was capped; its neighbour is unchanged."""
    src = shared_data / "annotations-mer-factory" / "default_merr_data_MER.json"
    if not src.is_file():
        pytest.skip("real MER-Factory output not present")
    data = json.loads(src.read_text(encoding="utf-8"))
    root = tmp_path / "run"
    (root / "normal").mkdir(parents=True)
    shutil.copy(src, root / "normal" / "normal_merr_data.json")
    summary = data["final_summary"]
    paras = summary.split("\n\n")
    body = "\n\n".join(paras[1:-1]) or summary
    reps = 5_000_000 // max(1, len(body))
    data["final_summary"] = "\n\n".join([paras[0]] + [body] * reps + [paras[-1]])
    assert len(data["final_summary"]) > 4_000_000
    (root / "huge").mkdir()
    (root / "huge" / "huge_merr_data.json").write_text(json.dumps(data), encoding="utf-8")
    cfg = load_config(sets=["cache.enabled=false", "metrics.cross_modal.embedding_model=null"])
    out = score_dataset(discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE)
    huge = [r for r in out.results["huge"] if r.metric != "composite_score"]
    assert huge
    for r in huge:
        cap = r.details.get("text_capped")
        assert cap and cap["final_summary"] == len(data["final_summary"]), r.metric
        assert cap["limit_chars"] == TEXT_CAP_CHARS
    assert all("text_capped" not in r.details for r in out.results["normal"])
    # the capped copy still concludes what the original concludes (its last paragraph is kept)
    cm = {r.metric: r for r in out.results["huge"]}
    cn = {r.metric: r for r in out.results["normal"]}
    assert cm["cross_modal_agreement"].details.get("concluded") == cn["cross_modal_agreement"].details.get(
        "concluded")


# ---- images -------------------------------------------------------------------------------------

def _png_rgb(path: Path, w: int, h: int) -> None:
    """A w x h RGB PNG written row by row (a vertical gradient), without holding the image in memory."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(6)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        idat = bytearray()
        for y in range(h):
            v = (y * 255) // max(1, h - 1)
            idat += comp.compress(b"\x00" + bytes((v, 255 - v, 128)) * w)
            if len(idat) > 1 << 20:
                f.write(chunk(b"IDAT", bytes(idat)))
                idat.clear()
        idat += comp.flush()
        f.write(chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b""))


def test_huge_png_is_downscaled_on_decode(tmp_path):
    from mer_eval.domain.media import MAX_DECODE_SIDE

    p = tmp_path / "huge.png"
    _png_rgb(p, 12000, 12000)
    peak, stdout = _peak_rss_mib(textwrap.dedent(f"""
        from mer_eval.domain.media import load_image
        im = load_image({str(p)!r})
        print('SIZE', im.size[0], im.size[1], im.mode)
        px = im.getpixel((0, im.size[1] - 1))
        print('PX', *px)
    """))
    size = next(line.split()[1:] for line in stdout.splitlines() if line.startswith("SIZE"))
    assert (int(size[0]), int(size[1]), size[2]) == (MAX_DECODE_SIDE, MAX_DECODE_SIDE, "RGB")
    px = next(line.split()[1:] for line in stdout.splitlines() if line.startswith("PX"))
    assert int(px[0]) > 240 and int(px[1]) < 15  # the gradient's bottom row survives the downscale
    # full decode would hold 432 MB and its RGB copies (3.2 GB measured before the cap)
    assert peak < 1024, f"peak RSS {peak:.0f} MiB decoding a 12000x12000 PNG"


def test_small_image_is_decoded_as_it_is(tmp_path):
    from PIL import Image

    from mer_eval.domain.media import load_image

    p = tmp_path / "small.png"
    Image.new("RGB", (640, 480), (10, 200, 30)).save(p)
    im = load_image(p)
    assert im.size == (640, 480) and im.getpixel((5, 5)) == (10, 200, 30)


def test_large_jpeg_uses_draft_and_keeps_aspect(tmp_path):
    from PIL import Image

    from mer_eval.domain.media import MAX_DECODE_SIDE, load_image

    p = tmp_path / "wide.jpg"
    Image.new("L", (9000, 3000), 90).save(p)
    im = load_image(p)
    assert im.mode == "RGB" and im.size[0] == MAX_DECODE_SIDE
    assert abs(im.size[0] / im.size[1] - 3.0) < 0.01


# ---- audio --------------------------------------------------------------------------------------

def test_yin_windows_equal_one_block_on_real_speech(shared_data):
    from mer_eval.generators.stages.audio import yin
    from mer_eval.domain import media

    f = shared_data / "speech-jfk" / "jfk.flac"
    if not f.is_file():
        pytest.skip("real speech not present")
    x = media.load_audio(f, 16000)
    x = np.asarray(x[0] if isinstance(x, tuple) else x)
    whole, db_whole = yin(x, block_frames=10**9)  # one block: the tracker as it was
    assert np.isfinite(whole).sum() > 100  # speech has voiced frames
    for bf in (1, 7, 250, 1000):
        f0, db = yin(x, block_frames=bf)
        assert np.array_equal(np.isnan(f0), np.isnan(whole)) and np.array_equal(db, db_whole)
        assert np.nanmax(np.abs(f0 - whole)) == 0.0


def test_yin_memory_is_flat_on_long_audio():
    """5 min of a voiced synthetic signal: the windowed tracker stays far below the 2.18 GB it took in one
    block, and finds the pitch."""
    peak, stdout = _peak_rss_mib(textwrap.dedent("""
        import numpy as np
        from mer_eval.generators.stages.audio import SR, yin
        t = np.arange(int(300 * SR)) / SR
        hz = 150 + 40 * np.sin(2 * np.pi * t / 7.0)
        x = 0.3 * np.sin(2 * np.pi * np.cumsum(hz) / SR) + 0.1 * np.sin(4 * np.pi * np.cumsum(hz) / SR)
        f0, _ = yin(x)
        print('MED', float(np.nanmedian(f0)), float(np.isfinite(f0).mean()))
    """))
    med, voiced = (float(v) for v in next(line.split()[1:] for line in stdout.splitlines()
                                           if line.startswith("MED")))
    assert 140 < med < 160 and voiced > 0.9
    assert peak < 700, f"peak RSS {peak:.0f} MiB on 5 min of audio"
