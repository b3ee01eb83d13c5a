"""Text helpers shared by generators and metrics (no model libraries here)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_SENT_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|St|vs|etc|e\.g|i\.e)\.$", re.I)


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text or ""))


_SPACE = re.compile(r"\s")


def cjk_ratio(text: str) -> float:
    """Share of the non-space characters that are CJK (counted by regex: no per-character Python loop)."""
    if not text or text.isascii():
        return 0.0  # no CJK character (0 / n, or no characters)
    n = len("".join(text.split()))  # str.split's white space is the regex's \s (both str.isspace)
    return len(_CJK.findall(text or "")) / n if n else 0.0


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation (Latin and CJK) and line breaks; keeps abbreviations joined."""
    if not text:
        return []
    parts = [p.strip() for p in _SENT_END.split(text.strip()) if p and p.strip()]
    out: list[str] = []
    for p in parts:
        if out and _ABBREV.search(out[-1]):
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


# bytes.translate table: a-z kept, every other byte a space; a text encoded to ASCII (any other character one "?")
# and translated keeps its offsets, and its maximal runs of a-z are the pieces between spaces
LETTERS_ONLY = bytes(b if 97 <= b <= 122 else 32 for b in range(256))


def find_all(text: str, sub: str) -> list[int]:
    """Every offset at which ``sub`` occurs in ``text``, overlapping ones included, ascending."""
    find = text.find
    out = []
    i = find(sub)
    while i >= 0:
        out.append(i)
        i = find(sub, i + 1)
    return out


_WORDS = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# every byte but a-z 0-9 and the apostrophe -> space (a token never holds one)
_WORD_BYTES = bytes(b if chr(b) in "abcdefghijklmnopqrstuvwxyz0123456789'" else 32 for b in range(256))
# an apostrophe that is not followed by letters up to the end of its chunk
_ODD_APOSTROPHE = re.compile(r"'(?:(?![a-z])|[a-z]+[0-9'])")


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, apostrophes)."""
    low = (text or "").lower()
    # = _WORDS.findall(low), without a match object per token: the text is cut into chunks of a-z 0-9 ' (every
    # other character, a non-ASCII one included (encoded as "?"), separates tokens); a chunk without an
    # apostrophe is one token (a maximal run of [a-z0-9]), one with an apostrophe is tokenised by the regex
    cut = low.encode("ascii", "replace").translate(_WORD_BYTES).decode("ascii")
    if "'" not in cut or (" '" not in cut and "''" not in cut and not cut.startswith("'")
                          and not _ODD_APOSTROPHE.search(cut)):
        return cut.split()  # every apostrophe in a chunk [a-z0-9]+'[a-z]+ (one token)
    out: list[str] = []
    pos = 0
    i = cut.find("'")
    while i >= 0:  # the chunks between those holding an apostrophe are split; these are tokenised by the regex
        a = max(cut.rfind(" ", pos, i) + 1, pos)  # the chunk of the apostrophe: [a, b)
        b = cut.find(" ", i)
        b = len(cut) if b < 0 else b
        out += cut[pos:a].split()
        out += _WORDS.findall(cut, a, b)
        pos = b
        i = cut.find("'", b)
    out += cut[pos:].split()
    return out


_MIXED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+(?:'[^\W_]+)?")


def mixed_tokens(text: str) -> list[str]:
    """Tokens for CJK or mixed text: every CJK character is a token, runs of other letters/digits (Latin
    words) are one token each, lower-cased; punctuation and spaces are dropped."""
    out = []
    for m in _MIXED.finditer((text or "").lower()):
        tok = m.group(0)
        if len(tok) > 1 and has_cjk(tok):  # a run mixing CJK with letters: split the CJK off
            out.extend(t for t in _MIXED.findall(_CJK.sub(lambda c: f" {c.group(0)} ", tok)))
        else:
            out.append(tok)
    return out


_TRANSCRIPT_WRAPPER = re.compile(
    r"""^\s*(?:the\s+)?(?:audio\s+)?(?:transcript(?:ion)?|subtitles?|speech)(?:\s+is)?\s*[:：]\s*"""
    r"""['"“‘「]?(?P<t>.*?)['"”’」]?\s*$""",
    re.I | re.S,
)


def unwrap_transcript(text: str) -> str:
    """``"The audio transcript is: '...'"`` -> ``"..."``; other text unchanged."""
    m = _TRANSCRIPT_WRAPPER.match(text or "")
    return m.group("t").strip() if m and m.group("t").strip() else (text or "").strip()


# Per-sample cost is bounded: a text longer than this is read as its first and last halves of this many
# characters (summaries of real runs are 1-6k characters; a 5 MB one would cost minutes), and the results say
# so (``details.text_capped``: field -> original length).
TEXT_CAP_CHARS = 100_000
CAP_JOIN = "\n[...]\n"


def cap_text(text: str | None, limit: int = TEXT_CAP_CHARS) -> tuple[str | None, int | None]:
    """``(text, None)`` when ``text`` is within ``limit`` characters, else ``(head + CAP_JOIN + tail, original
    length)`` with the first and last ``limit // 2`` characters (a summary concludes at its end)."""
    if text is None or len(text) <= limit:
        return text, None
    half = max(1, limit // 2)
    return text[:half] + CAP_JOIN + text[-half:], len(text)


def capped_sample(sample, limit: int = TEXT_CAP_CHARS):
    """``(sample, {})`` when every text of its annotation is within ``limit`` characters, else a copy whose long
    texts are capped (:func:`cap_text`) and ``{field: original length}``."""
    a = sample.annotation
    caps: dict[str, int] = {}
    upd: dict[str, str] = {}
    for f, v in vars(a).items():
        if isinstance(v, str) and len(v) > limit:
            upd[f], caps[f] = cap_text(v, limit)
    if not caps:
        return sample, caps
    return sample.model_copy(update={"annotation": a.model_copy(update=upd)}), caps


def score_each_capped(samples, one) -> dict:
    """``{id: one(sample)}`` with each sample's very long texts read head + tail and the results flagged
    (per-sample cost bounded)."""
    out = {}
    for s in samples:
        s2, caps = capped_sample(s)
        out[s.id] = rs = one(s2)
        mark_capped(rs, caps)
    return out


def mark_capped(results, caps: dict[str, int]) -> None:
    """Say in each result's details which texts were capped (and their original lengths)."""
    if caps:
        for r in results:
            r.details["text_capped"] = {**caps, "limit_chars": TEXT_CAP_CHARS}
