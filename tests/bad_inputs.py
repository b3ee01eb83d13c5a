"""The bad-input corpus (issue 13, item 1): each case GENERATES its inputs in a folder given to it, beside a
good sample, and says what a correct run does with it. :func:`run_case` runs ``validate``, ``generate``
(offline provider) and ``score`` (weight-free metrics) through the CLI as a user would and classifies the
outcome: ``handled`` (refused / noted with a clear reason), ``processed`` (a valid input, used right),
``crash`` (a traceback or an aborted run) or ``silent_wrong`` (a wrong value and no word about it)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FACE_JPG = EXAMPLES / "media" / "0-f15-hao-ph.jpg"
VIDEO = EXAMPLES / "media" / "single_face.mp4"
MF_SAMPLE = EXAMPLES / "mer-factory" / "default"  # default_merr_data.json, default_au_analysis.json, default.csv
WEIGHT_FREE = "text_quality,cross_modal,abstention,au_faithfulness"
EXIT_CODES = {0, 1, 2}  # README "Exit codes": 0 ok, 1 run finished with failed samples / a refused input, 2 usage


@dataclass
class Case:
    name: str
    kind: str  # media | mf | manifest
    build: Callable[[Path], None]  # writes INPUT's contents into the folder given
    reason: Optional[str] = None  # regex the output must match (the clear reason); None: a valid input
    bad_ids: list[str] = field(default_factory=list)  # sample ids that must get no score
    good_ids: list[str] = field(default_factory=lambda: ["good"])  # must be scored
    check: Optional[Callable[[Path, Path, str], Optional[str]]] = None  # (input, out, output) -> wrong value?
    entry: str = ""  # INPUT is this file inside the folder (a manifest), else the folder


# ---- generators ---------------------------------------------------------------------------------

def wav(path: Path, seconds: float = 1.0, sr: int = 16000, silent: bool = False, n: Optional[int] = None) -> None:
    """A 16-bit PCM WAV at ``path`` whatever its name ends with (a renamed file keeps WAV bytes)."""
    import soundfile as sf

    k = n if n is not None else int(seconds * sr)
    t = np.arange(k) / sr
    y = np.zeros(k) if silent else 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(str(path), y.astype(np.float32), sr, subtype="PCM_16", format="WAV")


def good(d: Path) -> None:
    wav(d / "good.wav")


def jpg(path: Path) -> None:
    shutil.copy(FACE_JPG, path)


def truncated(src: Path, dst: Path, frac: float = 0.3) -> None:
    b = src.read_bytes()
    dst.write_bytes(b[: max(1, int(len(b) * frac))])


def mf_good(root: Path, sid: str = "good") -> Path:
    d = root / sid
    d.mkdir(parents=True, exist_ok=True)
    for f in MF_SAMPLE.iterdir():
        shutil.copy(f, d / f.name.replace("default", sid))
    return d


def mf_bad(root: Path, payload: bytes | str | object, sid: str = "bad", suffix: str = "_merr_data.json") -> Path:
    d = root / sid
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{sid}{suffix}"
    if isinstance(payload, bytes):
        p.write_bytes(payload)
    elif isinstance(payload, str):
        p.write_text(payload, encoding="utf-8")
    else:
        p.write_text(json.dumps(payload), encoding="utf-8")
    return d


def mf_json() -> dict:
    return json.loads((MF_SAMPLE / "default_merr_data.json").read_text(encoding="utf-8"))


def openface_csv(path: Path, rows: int = 20, success: int = 1, drop: tuple = (), cut: bool = False) -> None:
    cols = ["frame", "face_id", "timestamp", "confidence", "success", "AU01_r", "AU04_r", "AU06_r", "AU12_r",
            "AU01_c", "AU12_c"]
    cols = [c for c in cols if c not in drop]
    lines = [", ".join(cols)]
    for i in range(rows):
        v = {"frame": i + 1, "face_id": 0, "timestamp": i / 25, "confidence": 0.98, "success": success,
             "AU01_r": 0.2, "AU04_r": 0.1, "AU06_r": 1.5 + (i % 5) * 0.3, "AU12_r": 2.0 + (i % 7) * 0.2,
             "AU01_c": 0, "AU12_c": 1}
        lines.append(", ".join(str(v[c]) for c in cols))
    text = "\n".join(lines) + "\n"
    if cut:
        text = text[: int(len(text) * 0.6)]
    path.write_text(text, encoding="utf-8")


def video(path: Path, frames: int = 8) -> None:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(frames):
        w.write(np.full((48, 64, 3), 40 + i * 10, np.uint8))
    w.release()


# ---- checks -------------------------------------------------------------------------------------

def _eval(out: Path, sid: str) -> Optional[dict]:
    p = out / sid / "mer_eval_scores.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def _results(out: Path, sid: str) -> dict[str, dict]:
    e = _eval(out, sid) or {}
    return {r["metric"]: r for r in e.get("results", [])}


def ok_values(out: Path, sid: str) -> dict[str, float]:
    return {m: r["value"] for m, r in _results(out, sid).items() if r.get("status") == "ok"}


def sample_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir()) if out.is_dir() else []


def files_under(root: Path) -> set[str]:
    out = set()
    for dp, dn, fn in os.walk(root, followlinks=False):
        for f in fn:
            out.add(str(Path(dp, f)))
    return out


# ---- the cases ----------------------------------------------------------------------------------

def _media(name, build, reason=None, bad_ids=(), check=None, good_ids=("good",)):
    def b(d: Path) -> None:
        good(d)
        build(d)
    return Case(name, "media", b, reason, list(bad_ids), list(good_ids), check)


def _mf(name, build, reason=None, bad_ids=("bad",), check=None, good_ids=("good",)):
    def b(d: Path) -> None:
        mf_good(d)
        build(d)
    return Case(name, "mf", b, reason, list(bad_ids), list(good_ids), check)


def _manifest(name, rows, reason=None, bad_ids=(), check=None, fmt="jsonl", extra=None, good_ids=("good",)):
    def b(d: Path) -> None:
        good(d)
        if extra:
            extra(d)
        p = d / f"manifest.{fmt}"
        if fmt == "jsonl":
            lines = [json.dumps({"id": "good", "audio": "good.wav"})]
            lines += [r if isinstance(r, str) else json.dumps(r) for r in rows]
            p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            p.write_text("id,audio\ngood,good.wav\n" + "".join(rows), encoding="utf-8")
    return Case(name, "manifest", b, reason, list(bad_ids), list(good_ids), check, entry=f"manifest.{fmt}")


def _truncated_wav(d: Path) -> None:
    wav(d / "cut.wav", seconds=3.0)
    truncated(d / "cut.wav", d / "cut.wav.part", 0.3)
    (d / "cut.wav.part").replace(d / "cut.wav")


def _check_truncated_wav(inp, out, text):
    if "cut" not in sample_dirs(out):
        return None  # refused
    meta = json.dumps([json.loads(p.read_text()) for p in (out / "cut").glob("*.json")])
    return None if re.search(r"truncat|cut off|decoded only in part|shorter than its header|header says", meta + text, re.I) else \
        "truncated wav processed without a note"


def _one_sample(d: Path) -> None:
    wav(d / "one.wav", n=1)


def _check_one_sample(inp, out, text):
    p = out / "one" / "one_audio_analysis.json"
    if not p.is_file():
        return None
    a = json.loads(p.read_text()).get("audio_analysis") or ""
    if re.search(r"loud|quiet|soft|energ|pitch", json.dumps(a), re.I) and not re.search(r"too short", a, re.I):
        return f"1-sample wav got a description: {a[:80]!r}"
    return None


def _huge(d: Path) -> None:
    from PIL import Image

    Image.new("RGB", (12000, 12000), (120, 110, 100)).save(d / "huge.png", optimize=False, compress_level=1)


def _cmyk(d: Path) -> None:
    from PIL import Image

    Image.open(FACE_JPG).convert("CMYK").save(d / "cmyk.jpg")


def _png16(d: Path) -> None:
    from PIL import Image

    g = np.asarray(Image.open(FACE_JPG).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(g.astype(np.uint16)).save(d / "deep.png")  # mode I;16


def _check_face(sid):
    def chk(inp, out, text):
        if sid not in sample_dirs(out):
            return f"{sid} not processed"
        recs = " ".join(p.read_text(encoding="utf-8") for p in (out / sid).glob("*.json"))
        if re.search(r"no face", recs, re.I):
            return f"{sid}: read as 'no face'"
        return None
    return chk


def _gif_as_png(d: Path) -> None:
    from PIL import Image

    fr = [Image.open(FACE_JPG).convert("RGB"), Image.new("RGB", Image.open(FACE_JPG).size, (0, 0, 0))]
    fr[0].save(d / "anim.png", format="GIF", save_all=True, append_images=fr[1:], duration=100, loop=0)


def _noface(d: Path) -> None:
    from PIL import Image

    Image.new("RGB", (200, 160), (90, 140, 200)).save(d / "noface.jpg")


def _labels(content: bytes):
    def b(d: Path) -> None:
        (d / "labels.csv").write_bytes(content)
    return b


def validate_json(text: str) -> dict:
    """``validate --json``'s document from the run's text."""
    i = text.find("== validate")
    j = text.find("{", i)
    return json.JSONDecoder().raw_decode(text[j:])[0] if i >= 0 and j >= 0 else {}


def _check_label(sid, want):
    # an audio sample's MER-Factory JSON has no label field: validate --json shows the label it read
    def chk(inp, out, text):
        if sid not in sample_dirs(out):
            return f"{sid} not processed"
        got = [s.get("label") for d in validate_json(text).get("datasets", []) for s in d["samples"]
               if s["id"] == sid]
        return None if got == [want] else f"label {got!r}, want {want!r}"
    return chk


def _collide(d: Path) -> None:
    for n in ("a b.wav", "a_b.wav", "a?b.wav"):
        wav(d / n)


def _check_collide(inp, out, text):
    dirs = [x for x in sample_dirs(out) if x.startswith("a")]
    refused = len(re.findall(r"a\?b|a b", text))
    if len(dirs) == 3 or (len(dirs) + (1 if refused else 0) >= 2 and refused):
        return None
    return f"3 inputs, {len(dirs)} sample folders: {dirs}"


def _symlink_out(d: Path) -> None:
    outside = d.parent / "outside_secret.wav"
    wav(outside)
    (d / "leak.wav").symlink_to(outside)


def _symlink_loop(d: Path) -> None:
    (d / "loop").symlink_to(d)  # a directory that contains itself
    (d / "x.wav").symlink_to(d / "y.wav")
    (d / "y.wav").symlink_to(d / "x.wav")


def _payload_labels(d: Path) -> None:
    wav(d / "xss.wav")
    (d / "labels.csv").write_text('name,label\nxss,"<script>alert(1)</script>"\ngood,happy\n', encoding="utf-8")
    (d / "xss.txt").write_text("{{7*7}} </textarea><script>alert(2)</script>", encoding="utf-8")


def _check_payload(inp, out, text):
    p = out / "xss" / "xss_audio_analysis.json"
    if not p.is_file():
        return "xss sample not processed"
    return "template evaluated" if "49" in p.read_text() and "{{7*7}}" not in p.read_text() else None


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _fer_meta(d: Path) -> None:
    d2 = mf_good(d, "bad")
    meta = {"provider": "offline", "evidence": {"fer": {"happy": float("nan"), "sad": float("inf"),
                                                        "neutral": 0.1}}}
    (d2 / "mer_eval_meta.json").write_text(json.dumps(meta), encoding="utf-8")  # NaN / Infinity literals


def _check_fer(inp, out, text):
    v = ok_values(out, "bad")
    for k, x in v.items():
        if k.startswith("cm_fer") and (x == 1.0 or not math.isfinite(x)):
            return f"{k} = {x} from NaN/inf FER probabilities"
    return None


def _au_nan(d: Path) -> None:
    j = mf_json()
    info = j.setdefault("overall_peak_frame_info", {})
    info["top_aus_intensities"] = {"AU12_r": "NaN", "AU06_r": "Infinity", "AU04_r": "strong", "AU01_r": 1.2}
    (mf_bad(d, j) / "bad_merr_data.json").write_text(
        json.dumps(j).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"), encoding="utf-8")


def _check_au_nan(inp, out, text):
    e = _eval(out, "bad")
    blob = json.dumps(e) if e else ""
    return "NaN/Infinity AU intensity accepted" if re.search(r"\bNaN\b|Infinity", blob) else None


def _frame(value: str):
    def b(d: Path) -> None:
        j = mf_json()
        j.setdefault("overall_peak_frame_info", {})["frame_number"] = "__V__"
        mf_bad(d, json.dumps(j).replace('"__V__"', value))
    return b


def _runjson_root(d: Path) -> None:
    (d / "run.json").write_text(json.dumps({"input": "/"}), encoding="utf-8")


def _check_runjson(inp, out, text):
    # no sample may carry media from outside INPUT
    bad = [p for p in (out.glob("*/mer_eval_scores.json")) if "/etc/" in p.read_text() or "/usr/" in p.read_text()]
    return f"read outside the input root: {bad}" if bad else None


def _mf_openface(kind: str):
    def b(d: Path) -> None:
        sd = mf_good(d, "bad")
        csv = sd / "bad.csv"
        if kind == "cut":
            openface_csv(csv, cut=True)
        elif kind == "success0":
            openface_csv(csv, success=0)
        else:
            openface_csv(csv, drop=("frame", "success"))
    return b


def _csv_manifest(d: Path) -> None:
    wav(d / "two.wav")


def _check_dirs(*ids):
    def chk(inp, out, text):
        missing = [i for i in ids if i not in sample_dirs(out)]
        return f"not processed: {missing}" if missing else None
    return chk


CASES: list[Case] = [
    # media: empty / truncated / renamed
    _media("zero_byte_mp4", lambda d: (d / "z.mp4").write_bytes(b""), r"z\b.*(empty|0 bytes)", ["z"]),
    _media("zero_byte_wav", lambda d: (d / "z.wav").write_bytes(b""), r"z\b.*(empty|0 bytes)", ["z"]),
    _media("zero_byte_jpg", lambda d: (d / "z.jpg").write_bytes(b""), r"z\b.*(empty|0 bytes)", ["z"]),
    _media("truncated_mp4", lambda d: truncated(VIDEO, d / "t.mp4"), r"t\b.*(truncat|cannot|unreadable|not a)",
           ["t"]),
    _media("truncated_wav", _truncated_wav, None, [], _check_truncated_wav),
    _media("truncated_jpg", lambda d: truncated(FACE_JPG, d / "t.jpg", 0.4), None, [], None),
    _media("renamed_mp4", lambda d: (d / "r.mp4").write_text("not a video\n" * 50), r"r\b.*(not|cannot|unread)",
           ["r"]),
    _media("renamed_wav", lambda d: shutil.copy(FACE_JPG, d / "r.wav"), r"r\b.*(not|cannot|unread)", ["r"]),
    _media("renamed_jpg", lambda d: wav(d / "r.jpg"), r"r\b.*(not|cannot|unread)", ["r"]),
    _media("no_audio_track", lambda d: video(d / "mute.mp4"), None, [], _check_dirs("mute")),
    _media("silence_wav", lambda d: wav(d / "quiet.wav", silent=True), None, [], _check_dirs("quiet")),
    _media("one_sample_wav", _one_sample, None, [], _check_one_sample),
    _media("huge_image", _huge, None, [], _check_dirs("huge")),
    _media("cmyk_jpg", _cmyk, None, [], _check_face("cmyk")),
    _media("png_16bit", _png16, None, [], _check_face("deep")),
    _media("gif_as_png", _gif_as_png, None, [], _check_dirs("anim")),
    _media("no_face", _noface, None, [], _check_dirs("noface")),
    # labels / transcripts
    _media("labels_non_utf8", _labels("name,label\ngood,caf\xe9\n".encode("latin-1")), r"labels\.csv", []),
    _media("labels_no_header", _labels(b"good,happy\nother,sad\n"), r"labels\.csv", []),
    _media("labels_bom", _labels("\ufeffname,label\ngood,happy\n".encode("utf-8")), None, [],
           _check_label("good", "happy")),
    _media("labels_duplicates", _labels(b"name,label\ngood,happy\ngood,sad\n"), r"labels\.csv.*good.*(twice|duplic)",
           []),
    _media("labels_unknown_label", _labels(b"name,label\ngood,zorgblatt\n"), None, [],
           _check_label("good", "zorgblatt")),
    _media("transcript_non_utf8", lambda d: (d / "transcription").write_bytes(b"<s> caf\xe9 </s> (good)\n"),
           r"transcription", []),
    _media("transcript_txt_non_utf8", lambda d: (wav(d / "tx.wav"), (d / "tx.txt").write_bytes(b"\xff\xfe\xfa"))
           and None, r"tx\.txt", []),
    # names and paths
    _media("id_collision", _collide, None, [], _check_collide),
    _media("name_only_non_ascii", lambda d: wav(d / "日本語.wav"), None, [], None),
    _media("name_unicode", lambda d: wav(d / "café.wav"), None, [], None),
    _media("name_leading_dash", lambda d: wav(d / "-rf.wav"), None, [], None),
    _media("name_newline", lambda d: wav(d / "a\nb.wav"), None, [], None),
    _media("symlink_out_of_root", _symlink_out, r"leak\.wav.*outside", ["leak"]),
    _media("symlink_loop", _symlink_loop, None, [], None),
    _media("payload_texts", _payload_labels, None, [], _check_payload),
    # MER-Factory JSON
    _mf("mf_bom_json", lambda d: mf_bad(d, b"\xef\xbb\xbf" + json.dumps(mf_json()).encode()), None, [],
        _check_dirs("bad"), good_ids=["good", "bad"]),
    _mf("mf_truncated_json", lambda d: mf_bad(d, json.dumps(mf_json())[:200]), r"bad.*not valid JSON"),
    _mf("mf_list_json", lambda d: mf_bad(d, [mf_json()]), r"bad.*expected a JSON object"),
    _mf("mf_non_utf8_json", lambda d: mf_bad(d, b'{"final_summary": "caf\xe9", "coarse_descriptions_at_peak": {}}'),
        r"bad.*(UTF-8|utf-8|decode)"),
    _mf("mf_number_summary", lambda d: mf_bad(d, {**mf_json(), "final_summary": 42}), r"bad.*final_summary"),
    _mf("mf_dict_audio_analysis", lambda d: mf_bad(d, {"audio_analysis": {"error": "quota"}},
                                                   suffix="_audio_analysis.json"), r"bad.*audio_analysis"),
    _mf("mf_au_nan_strings", _au_nan, None, [], _check_au_nan, good_ids=["good"]),
    _mf("mf_fer_nan_inf", _fer_meta, None, [], _check_fer),
    _mf("mf_deep_nested", lambda d: mf_bad(d, _nested(100_000)), r"bad.*(nest|deep|not valid)"),
    _mf("mf_frame_abc", _frame('"abc"'), r"bad.*frame_number", [], None, good_ids=["good"]),
    _mf("mf_frame_nan", _frame("NaN"), r"bad.*frame_number", [], None, good_ids=["good"]),
    _mf("mf_frame_1e400", _frame("1e400"), r"bad.*frame_number", [], None, good_ids=["good"]),
    _mf("mf_run_json_root", _runjson_root, None, [], _check_runjson),
    _mf("openface_truncated", _mf_openface("cut"), None, [], None, good_ids=["good", "bad"]),
    _mf("openface_success0", _mf_openface("success0"), None, [], None, good_ids=["good", "bad"]),
    _mf("openface_missing_columns", _mf_openface("cols"), r"bad.*(OpenFace|frame)", [], None,
        good_ids=["good", "bad"]),
    # manifests
    _manifest("jsonl_not_object", ['["x.wav"]'], r"manifest\.jsonl:2.*object"),
    _manifest("jsonl_not_json", ["{broken"], r"manifest\.jsonl:2.*not JSON"),
    _manifest("unknown_type", [{"id": "u", "audio": "good.wav", "type": "hologram"}], r"u\b.*type.*hologram", ["u"]),
    _manifest("duplicate_ids", [{"id": "good", "audio": "good.wav"}], r"good.*(duplicate|twice|more than once)"),
    _manifest("absolute_path", [{"id": "abs", "audio": "/etc/passwd"}], r"abs.*outside", ["abs"]),
    _manifest("dotdot_id", [{"id": "../evil", "audio": "good.wav"}], r"evil.*not allowed"),
    _manifest("dotdot_path", [{"id": "up", "audio": "../outside.wav"}], r"up.*outside", ["up"]),
    _manifest("missing_file", [{"id": "gone", "audio": "gone.wav"}], r"gone.*(not found|no such|missing|does not)",
              ["gone"]),
    _manifest("csv_manifest", ["two,two.wav\n"], None, [], _check_dirs("good", "two"), fmt="csv",
              extra=_csv_manifest),
]


# ---- running ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    case: str
    verdict: str  # handled | processed | crash | silent_wrong
    detail: str = ""
    exit_codes: dict = field(default_factory=dict)


def _invoke(args: list[str]) -> tuple[int, str, Optional[BaseException]]:
    from click.testing import CliRunner

    from mer_eval.cli import main

    r = CliRunner().invoke(main, args, catch_exceptions=True)
    exc = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
    text = r.output  # click >= 8.2: stdout and stderr interleaved, as a user sees them
    if exc is not None:
        text += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return r.exit_code, text, exc


def run_case(case: Case, base: Path) -> Outcome:
    inp_dir = base / "in"
    inp_dir.mkdir(parents=True)
    case.build(inp_dir)
    inp = inp_dir / case.entry if case.entry else inp_dir
    out = base / "out"
    before = files_under(base)
    texts, codes = [], {}
    crashes = []
    steps = [("validate", ["validate", str(inp), "--json"])]
    if case.kind in ("media", "manifest"):
        steps.append(("generate", ["generate", str(inp), str(out), "--json", "--no-progress"]))
        steps.append(("score", ["score", str(out), "--metrics", WEIGHT_FREE, "--no-cache", "--json"]))
    else:
        steps.append(("score", ["score", str(inp), "--out", str(out), "--metrics", WEIGHT_FREE, "--no-cache",
                                "--json"]))
    for step, args in steps:
        if step == "score" and not out.is_dir() and case.kind != "mf":
            codes[step] = None
            continue
        code, text, exc = _invoke(args)
        codes[step] = code
        texts.append(f"== {step} (exit {code})\n{text}")
        if exc is not None or "Traceback (most recent call last)" in text:
            crashes.append(f"{step}: {type(exc).__name__ if exc else 'traceback'}: {exc}")
        elif code not in EXIT_CODES:
            crashes.append(f"{step}: undocumented exit code {code}")
    # the tmp folder's name (pytest: test_bad_input_<case>_0) must not satisfy a reason or a check
    text = "\n".join(texts).replace(str(base.resolve()), "<BASE>").replace(str(base), "<BASE>")
    if crashes:
        return Outcome(case.name, "crash", "; ".join(crashes) + "\n" + text[-3000:], codes)
    after = files_under(base)
    leaked = sorted(p for p in after - before if not p.startswith(str(out) + os.sep))
    if leaked:
        return Outcome(case.name, "silent_wrong", f"written outside OUT: {leaked[:5]}", codes)
    problems = []
    for sid in case.good_ids:
        if not (out / sid / "mer_eval_scores.json").is_file():
            problems.append(f"good sample {sid!r} not scored")
    for sid in case.bad_ids:
        if ok_values(out, sid):
            problems.append(f"garbage sample {sid!r} got scores")
    if case.check is not None:
        w = case.check(inp, out, text)
        if w:
            problems.append(w)
    if case.reason is not None and not re.search(case.reason, text, re.I):  # one line says it
        problems.append(f"no clear reason matching /{case.reason}/ on one line")
    if problems:
        return Outcome(case.name, "silent_wrong", "; ".join(problems) + "\n" + text[-3000:], codes)
    return Outcome(case.name, "handled" if case.reason else "processed", "", codes)


def tally(outcomes: list[Outcome]) -> dict:
    t = {"inputs_tried": len(outcomes)}
    for v in ("handled", "processed", "crash", "silent_wrong"):
        t[v] = sum(o.verdict == v for o in outcomes)
    t["failing"] = {o.case: o.detail.splitlines()[0] if o.detail else o.verdict for o in outcomes
                    if o.verdict in ("crash", "silent_wrong")}
    return t

