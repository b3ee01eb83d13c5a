"""Media helpers: probe files, decode audio / frames, load images, write wav.

PyAV (which bundles FFmpeg) reads every container; ``soundfile`` is the fallback for audio files
when PyAV is missing or cannot open them. All heavy imports are lazy.

Decisions, so results are reproducible:

* Audio is decoded to float32, mixed to mono as the plain mean of the channels, then resampled
  with :func:`scipy.signal.resample_poly` (a deterministic polyphase filter), never with FFmpeg's
  resampler.
* An audio stream that decodes to nothing but exact zeros (e.g. the silent track editors add to a
  video, as in ``WolfgangLanger_Pexels.mp4``) counts as *no audio*: :func:`load_audio` raises
  :class:`MediaError` saying so, unless ``allow_silent=True``.
* Video frames are decoded sequentially from the start (no keyframe seeking), so frame ``i`` is
  always the ``i``-th decoded frame (0-based). OpenFace numbers frames from 1: pass ``frame - 1``.
"""

from __future__ import annotations

import io
import wave
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from mer_eval.store import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

PathLike = Union[str, Path]

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus", ".wma", ".aiff", ".aif"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".wmv", ".flv", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


_IMAGE_CODECS = {"mjpeg", "png", "bmp", "webp", "tiff", "gif", "jpeg2000", "jpegls"}


class MediaError(RuntimeError):
    """A media file cannot be read, or lacks the stream asked for; the message says which and why."""


class NoAudioError(MediaError):
    """The file is readable but holds no audio: no audio stream, or only digital silence."""


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: Optional[float]  # seconds
    has_video: bool
    has_audio: bool
    fps: Optional[float] = None
    n_frames: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    audio_sr: Optional[int] = None
    audio_channels: Optional[int] = None
    video_codec: Optional[str] = None
    audio_codec: Optional[str] = None
    reader: str = "av"  # av | soundfile
    is_image: bool = False  # a still image file (PyAV reads it as a one-frame video; has_video is False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _av():
    try:
        import av  # noqa: PLC0415
    except ImportError:
        return None
    return av


def _check_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: file does not exist")
    if not p.is_file():
        raise MediaError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty")
    return p


def _open(p: Path):
    av = _av()
    if av is None:
        raise MediaError(f"{p}: PyAV (package 'av') is not installed; cannot read video or this container")
    try:
        return av.open(str(p))
    except Exception as e:  # av.error.* (InvalidDataError, ...) -> one clear error type
        raise MediaError(f"{p}: cannot open media ({type(e).__name__}: {e})") from e


# ---- probe --------------------------------------------------------------------------------------

def probe(path: PathLike) -> MediaInfo:
    """Streams, duration, frame rate/count, size and audio rate of a media file.

    Raises :class:`MediaError` for missing, corrupt or stream-less files.
    """
    p = _check_file(path)
    av_err: Optional[MediaError] = None
    if _av() is not None:
        try:
            return _probe_av(p)
        except MediaError as e:
            av_err = e
    info = _probe_soundfile(p)
    if info is not None:
        return info
    if av_err is not None:
        raise av_err
    raise MediaError(f"{p}: PyAV is not installed and soundfile cannot read it")


def _probe_av(p: Path) -> MediaInfo:
    c = _open(p)
    try:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        if v is None and a is None:
            raise MediaError(f"{p}: no audio or video stream")
        duration = float(c.duration) / 1_000_000 if c.duration else None  # AV_TIME_BASE
        fps = n_frames = width = height = vcodec = None
        if v is not None:
            rate = v.average_rate or v.guessed_rate or v.base_rate
            fps = float(rate) if rate else None
            width, height = v.codec_context.width or None, v.codec_context.height or None
            vcodec = v.codec_context.name
            if duration is None and v.duration and v.time_base:
                duration = float(v.duration * v.time_base)
            n_frames = int(v.frames) if v.frames else None
        sr = ch = acodec = None
        if a is not None:
            sr = int(a.rate) if a.rate else None
            ch = a.codec_context.channels if hasattr(a.codec_context, "channels") else None
            if not ch:
                try:
                    ch = len(a.layout.channels)
                except Exception:  # noqa: BLE001 - layout unknown; leave channels unknown
                    ch = None
            acodec = a.codec_context.name
            if duration is None and a.duration and a.time_base:
                duration = float(a.duration * a.time_base)
    finally:
        c.close()
    if v is not None and n_frames is None:
        n_frames = _count_video_packets(p)
    if vcodec in _IMAGE_CODECS and a is None and (n_frames or 1) <= 1:
        return MediaInfo(str(p), None, False, False, None, None, width, height, video_codec=vcodec,
                         is_image=True)
    return MediaInfo(str(p), duration, v is not None, a is not None, fps, n_frames, width, height, sr, ch,
                     vcodec, acodec)


def _count_video_packets(p: Path) -> Optional[int]:
    """Frame count by demuxing (no decoding) when the container does not store it."""
    c = _open(p)
    try:
        n = sum(1 for pkt in c.demux(c.streams.video[0]) if pkt.size)
    except Exception as e:  # noqa: BLE001
        raise MediaError(f"{p}: cannot read video packets ({type(e).__name__}: {e})") from e
    finally:
        c.close()
    return n or None


def _probe_soundfile(p: Path) -> Optional[MediaInfo]:
    try:
        import soundfile as sf  # noqa: PLC0415

        i = sf.info(str(p))
    except Exception:  # noqa: BLE001 - not readable by soundfile either; caller raises av's error
        return None
    return MediaInfo(str(p), float(i.duration), False, True, audio_sr=int(i.samplerate),
                     audio_channels=int(i.channels), audio_codec=str(i.subtype), reader="soundfile")


# ---- audio --------------------------------------------------------------------------------------

_INT_SCALE = {"u8": None, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854776e18}


def _frame_to_float(frame) -> np.ndarray:
    """An av.AudioFrame as float32 (channels, n)."""
    arr = frame.to_ndarray()
    fmt = frame.format.name
    base = fmt[:-1] if fmt.endswith("p") else fmt
    nch = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: (1, n*ch) interleaved
        arr = arr.reshape(-1, nch).T
    if base == "u8":
        out = (arr.astype(np.float32) - 128.0) / 128.0
    elif base in _INT_SCALE:
        out = arr.astype(np.float32) / np.float32(_INT_SCALE[base])
    else:  # flt / dbl
        out = arr.astype(np.float32)
    return out


# file (resolved path, size, mtime) -> why its audio decoded only in part (the decoder failed after some frames)
_PARTIAL: dict[tuple[str, int, int], str] = {}


def partial_decode(path: PathLike) -> Optional[str]:
    """Why the last :func:`load_audio` of ``path`` kept only part of its audio (the decoder failed part-way),
    or None. A truncated file is decoded as far as it goes; this says so instead of keeping it silently."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    return _PARTIAL.get((str(p.resolve()), st.st_size, st.st_mtime_ns))


def _wav_shortfall(p: Path) -> Optional[str]:
    """A RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds (a cut-off wav: FFmpeg
    decodes what is there and says nothing)."""
    import struct

    try:
        with p.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            size = p.stat().st_size
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    have = size - (pos + 8)
                    if clen != 0xFFFFFFFF and clen > have:
                        return (f"the wav's data chunk declares {clen} bytes, the file holds {have} "
                                f"({100.0 * have / clen:.0f}%): cut off")
                    return None
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return None
    return None


def _decode_audio_av(p: Path) -> tuple[np.ndarray, int]:
    c = _open(p)
    try:
        if not c.streams.audio:
            raise NoAudioError(f"{p}: no audio stream")
        stream = c.streams.audio[0]
        chunks: list[np.ndarray] = []
        sr = None
        try:
            for frame in c.decode(stream):
                sr = sr or frame.sample_rate
                chunks.append(_frame_to_float(frame).mean(axis=0))
        except Exception as e:  # noqa: BLE001 - decoder errors become MediaError with the cause
            if not chunks:
                raise MediaError(f"{p}: cannot decode audio ({type(e).__name__}: {e})") from e
            # a truncated file: keep what decoded (deterministic for the same file) and record that it is partial
            st = p.stat()
            _PARTIAL[(str(p.resolve()), st.st_size, st.st_mtime_ns)] = (
                f"the decoder stopped after {sum(len(c) for c in chunks) / float(sr or stream.rate or 1):.2f} s "
                f"({type(e).__name__}: {e})")
        sr = sr or stream.rate
    finally:
        c.close()
    if not chunks or not sr:
        raise MediaError(f"{p}: audio stream decodes to no samples")
    return np.concatenate(chunks).astype(np.float32), int(sr)


def _decode_audio_sf(p: Path) -> tuple[np.ndarray, int]:
    try:
        import soundfile as sf  # noqa: PLC0415
    except ImportError as e:
        raise MediaError(f"{p}: neither PyAV nor soundfile can read it (soundfile not installed)") from e
    try:
        x, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise MediaError(f"{p}: cannot read audio ({type(e).__name__}: {e})") from e
    return x.mean(axis=1).astype(np.float32), int(sr)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Deterministic polyphase resampling (scipy.signal.resample_poly)."""
    if sr_in == sr_out:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly  # noqa: PLC0415

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(np.asarray(audio, dtype=np.float64), sr_out // g, sr_in // g).astype(np.float32)


def load_audio(path: PathLike, sr: int = 16000, allow_silent: bool = False) -> np.ndarray:
    """Mono float32 audio at ``sr`` Hz from an audio *or* video file.

    Raises :class:`NoAudioError` (a :class:`MediaError`) when the file has no audio stream or (unless
    ``allow_silent``) its audio is digital silence (all samples exactly zero), :class:`MediaError` when it
    cannot be decoded.
    """
    p = _check_file(path)
    x: Optional[np.ndarray] = None
    src_sr = 0
    av_err: Optional[MediaError] = None
    if _av() is not None:
        try:
            x, src_sr = _decode_audio_av(p)
        except MediaError as e:
            av_err = e
    if x is None:
        if isinstance(av_err, NoAudioError):
            raise av_err
        try:
            x, src_sr = _decode_audio_sf(p)
        except MediaError:
            if av_err is not None:
                raise av_err
            raise
    if x.size == 0:
        raise MediaError(f"{p}: audio stream decodes to no samples")
    if p.suffix.lower() == ".wav":
        short = _wav_shortfall(p)
        if short:
            st = p.stat()
            _PARTIAL[(str(p.resolve()), st.st_size, st.st_mtime_ns)] = short
    if not allow_silent and not np.any(x):
        raise NoAudioError(f"{p}: the audio stream is digital silence (every sample is 0); treated as no audio")
    return resample(x, src_sr, int(sr))


def write_wav(path: PathLike, audio: np.ndarray, sr: int) -> Path:
    """Write mono 16-bit PCM wav atomically (temp file in the same folder, then rename)."""
    p = Path(path)
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim > 1:
        x = x.mean(axis=0 if x.shape[0] < x.shape[-1] else 1)
    if not np.all(np.isfinite(x)):
        raise MediaError(f"{p}: audio holds NaN or infinite samples; not written")
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sr))
        w.writeframes(pcm.tobytes())
    atomic_write_bytes(p, buf.getvalue())
    return p


# ---- images and frames --------------------------------------------------------------------------

def image_to_rgb(im: "Image.Image") -> "Image.Image":
    """A PIL image as 8-bit RGB. Pillow's ``convert("RGB")`` clips 16- and 32-bit grey (modes ``I;16*``,
    ``I``) at 255, so a 16-bit PNG would read as all white: those are scaled down (16-bit: / 257; ``I``
    holding values above 65535: by its maximum), float images (``F``) are read as 0..1 or 0..255."""
    from PIL import Image  # noqa: PLC0415

    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(np.nanmax(a)) if a.size else 0.0
        if mode == "F":
            scale = 255.0 if top <= 1.0 else 1.0
        elif mode.startswith("I;16") or top <= 65535:
            scale = 255.0 / 65535.0 if (mode.startswith("I;16") or top > 255) else 1.0
        else:
            scale = 255.0 / top
        g = np.clip(np.nan_to_num(a * scale), 0, 255).round().astype(np.uint8)
        return Image.fromarray(g, "L").convert("RGB")
    return im.convert("RGB")


MAX_DECODE_SIDE = 4096  # larger images are downscaled on decode (a 12000x12000 PNG must not cost 3 GB)
_RESIZABLE = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"}


def load_image(path: PathLike, max_side: Optional[int] = MAX_DECODE_SIDE) -> "Image.Image":
    """An image file as an RGB PIL image (EXIF orientation applied; 16-bit grey scaled, see
    :func:`image_to_rgb`). An image whose longer side exceeds ``max_side`` is downscaled to it while decoding
    (JPEG: in the DCT domain, ``draft``; others: ``thumbnail`` right after decoding, before any copy); one over
    Pillow's ``2 * Image.MAX_IMAGE_PIXELS`` is refused as a decompression bomb (``MediaError``)."""
    p = _check_file(path)
    from PIL import Image, ImageOps  # noqa: PLC0415

    try:
        with Image.open(p) as im:
            big = bool(max_side) and max(im.size) > max_side
            if big and im.format == "JPEG":
                im.draft(None, (max_side, max_side))
            im.load()
            if big and max(im.size) > max_side:
                if im.mode not in _RESIZABLE:
                    im = image_to_rgb(im)
                im.thumbnail((max_side, max_side))
            im = ImageOps.exif_transpose(im)
            return image_to_rgb(im)
    except Exception as e:  # noqa: BLE001 - PIL raises several types for bad files
        raise MediaError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` frame indices spread over ``n`` frames: the centres of k equal segments (k=1: the middle)."""
    if n <= 0 or k <= 0:
        return []
    k = min(k, n)
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


def read_video_frames(
    path: PathLike, indices: Optional[Sequence[int]] = None, k: Optional[int] = None
) -> list[tuple[int, float, "Image.Image"]]:
    """Decoded frames as ``(frame_index, timestamp_s, RGB image)``, 0-based indices.

    Either ``indices`` (0-based) or ``k`` evenly spaced frames (see :func:`evenly_spaced`). Frames are
    decoded sequentially from the start, so indices are exact. Raises :class:`MediaError` when the
    file has no video stream or an index lies beyond the last frame.
    """
    p = _check_file(path)
    if (indices is None) == (k is None):
        raise ValueError("pass exactly one of indices= or k=")
    if k is not None:
        info = probe(p)
        if not info.has_video:
            raise MediaError(f"{p}: no video stream")
        n = info.n_frames or _count_video_packets(p) or 0
        if n <= 0:
            raise MediaError(f"{p}: video has no frames")
        want = evenly_spaced(n, int(k))
    else:
        want = sorted({int(i) for i in indices or []})
        if any(i < 0 for i in want):
            raise MediaError(f"{p}: negative frame index in {list(indices or [])}")
    if not want:
        return []
    targets = set(want)
    out: list[tuple[int, float, Any]] = []
    c = _open(p)
    idx = -1
    try:
        if not c.streams.video:
            raise MediaError(f"{p}: no video stream")
        stream = c.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        try:
            for frame in c.decode(stream):
                idx += 1
                if idx in targets:
                    ts = float(frame.time) if frame.time is not None else (idx / fps if fps else float("nan"))
                    out.append((idx, ts, frame.to_image().convert("RGB")))
                    if len(out) == len(targets):
                        break
        except MediaError:
            raise
        except Exception as e:  # noqa: BLE001
            raise MediaError(f"{p}: cannot decode video frame {idx + 1} ({type(e).__name__}: {e})") from e
    finally:
        c.close()
    got = {i for i, _, _ in out}
    missing = [i for i in want if i not in got]
    if missing and k is not None:
        # container frame count overstated: fall back to the frames that really decode
        return read_video_frames(p, indices=evenly_spaced(idx + 1, int(k))) if idx >= 0 else out
    if missing:
        raise MediaError(f"{p}: frame index {missing[0]} is beyond the last frame ({idx}, 0-based)")
    return out


def frame_at(path: PathLike, frame_index: int) -> "Image.Image":
    """The frame at 0-based ``frame_index`` as an RGB image."""
    return read_video_frames(path, indices=[frame_index])[0][2]


def middle_frame(path: PathLike) -> tuple[int, float, "Image.Image"]:
    """The middle frame of a video: ``(index, timestamp_s, image)``."""
    frames = read_video_frames(path, k=1)
    if not frames:
        raise MediaError(f"{path}: video has no frames")
    return frames[0]
