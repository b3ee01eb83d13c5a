"""A large dataset's samples kept compact: each :class:`~mer_eval.schema.Sample` as compressed JSON (Zstandard
level 1 through pyarrow, about 1.7 kB for a MER-Factory sample, against about 10 kB as Python objects; zlib where
this pyarrow lacks Zstandard), decoded when it is read. A packed sample lives only in memory and between the
processes of one run: it is never written to disk.

Discovery keeps a run of more than :data:`COMPACT_ABOVE` samples in a :class:`SampleStore`, so memory stays flat
from 1k to 100k samples (issue #12): ``score`` decodes one chunk at a time. It is a sequence like the list it
replaces; a sample read from it is a fresh copy, so code that changes samples writes them back
(``samples[i] = s``), which is also a no-op on a list.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Iterator, MutableSequence
from typing import Union, overload

from mer_eval.schema import Sample

COMPACT_ABOVE = 2000  # samples: up to this many, discovery keeps a plain list
_ZSTD = b"\x01"  # a packed sample that begins so is Zstandard (its JSON's length follows, 4 bytes); zlib's begin 0x78


@functools.cache
def _zstd():
    """pyarrow's Zstandard codec at level 1, or None when this build lacks it. A sample's JSON is compressed and
    decompressed in about 28 + 18 us against zlib level 1's 57 + 18 (the same 1.7 kB; LZ4 takes 9 us but keeps
    2.4 kB, and the packed samples are what a large run holds in memory): 100k samples are packed once, in
    discovery, and unpacked once, where they are scored."""
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=1) if pa.Codec.is_available("zstd") else None


def _compress(data: bytes) -> bytes:
    codec = _zstd()
    if codec is None:
        return zlib.compress(data, 1)
    return _ZSTD + len(data).to_bytes(4, "little") + codec.compress(data, asbytes=True)


def _decompress(blob: bytes) -> bytes:
    if blob[:1] == _ZSTD:
        return _zstd().decompress(blob[5:], decompressed_size=int.from_bytes(blob[1:5], "little"), asbytes=True)
    return zlib.decompress(blob)


class SampleStore(MutableSequence):
    def __init__(self, samples: Iterable[Sample] = ()):
        self._blobs: list[bytes] = []
        self._ids: list[str] = []
        for s in samples:
            self.append(s)

    @staticmethod
    def pack(s: Sample) -> bytes:
        """``s`` as the store keeps it (what :meth:`unpack` reads), wherever it is made (a discovery worker)."""
        return _compress(s.model_dump_json().encode("utf-8"))

    _pack = pack

    def append_packed(self, b: bytes, sample_id: str) -> None:
        """Append sample ``sample_id``, :meth:`pack`-ed elsewhere (a discovery worker)."""
        self._blobs.append(b)
        self._ids.append(sample_id)

    @staticmethod
    def unpack(b: bytes) -> Sample:
        """A packed sample (:meth:`packed`) as a :class:`Sample` again, wherever it is read (a worker, an actor)."""
        return Sample.model_validate_json(_decompress(b))

    _unpack = unpack

    def packed(self, i: int) -> bytes:
        """Sample ``i`` still packed: what a worker process or a Ray actor is sent (it unpacks it there)."""
        return self._blobs[i]

    @property
    def ids(self) -> list[str]:
        """The samples' ids, in order, without decoding them."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._blobs)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...

    def __getitem__(self, i: Union[int, slice]):
        if isinstance(i, slice):
            return [self._unpack(b) for b in self._blobs[i]]
        return self._unpack(self._blobs[i])

    def __setitem__(self, i, s) -> None:
        if isinstance(i, slice):
            items = list(s)
            self._blobs[i] = [self._pack(x) for x in items]
            self._ids[i] = [x.id for x in items]
            return
        self._blobs[i] = self._pack(s)
        self._ids[i] = s.id

    def __delitem__(self, i) -> None:
        del self._blobs[i]
        del self._ids[i]

    def insert(self, i: int, s: Sample) -> None:
        self._blobs.insert(i, self._pack(s))
        self._ids.insert(i, s.id)

    def __iter__(self) -> Iterator[Sample]:
        for b in self._blobs:
            yield self._unpack(b)

    def __add__(self, other: Iterable[Sample]) -> list[Sample]:
        return list(self) + list(other)

    def __repr__(self) -> str:
        return f"SampleStore({len(self)} samples, {sum(map(len, self._blobs))} bytes)"


def sample_ids(samples) -> list[str]:
    """The ids of a list of samples or a :class:`SampleStore` (without decoding the store)."""
    return samples.ids if isinstance(samples, SampleStore) else [s.id for s in samples]


def compact(samples: list[Sample]):
    """``samples`` as they should be kept: a :class:`SampleStore` above :data:`COMPACT_ABOVE`, else the list."""
    return SampleStore(samples) if len(samples) > COMPACT_ABOVE else samples
