"""How the catalog's records are laid out in LMDB (the data directory's format).

Integers in keys are 8-byte big-endian so LMDB's byte order is numeric order: listing a
gallery, scanning its faces or replaying its change log is one cursor walk. Records are
compact JSON; a face is a small JSON header followed by its vector, float32 or (when the top
bit of the header's length is set) float16: what the writer gave. Records written before
float16 existed have that bit clear, so they read as they always did. Vectors always read
back as float32.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass

import numpy as np

from ..records import FaceInfo, GalleryRecord, ImageRecord, KeyRecord

_U64 = struct.Struct(">Q")
_FACE_HEADER = struct.Struct(">H")
_FLOAT16 = 0x8000  # set in a face header's length: the vector is float16
_CHANGE = struct.Struct(">cQ")


def u64(value: int) -> bytes:
    return _U64.pack(value)


def pair(first: int, second: int) -> bytes:
    return _U64.pack(first) + _U64.pack(second)


def first_of(key: bytes) -> int:
    return _U64.unpack_from(key, 0)[0]


def second_of(key: bytes) -> int:
    return _U64.unpack_from(key, 8)[0]


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(record: KeyRecord | GalleryRecord | ImageRecord) -> bytes:
    return dumps(asdict(record))


def decode_key(raw: bytes) -> KeyRecord:
    return KeyRecord(**json.loads(raw))


def decode_gallery(raw: bytes) -> GalleryRecord:
    return GalleryRecord(**json.loads(raw))


def decode_image(raw: bytes) -> ImageRecord:
    data = json.loads(raw)
    data["faces"] = [FaceInfo(**face) for face in data["faces"]]
    return ImageRecord(**data)


def decode_face_ids(raw: bytes, gid: int) -> list[int]:
    """The face ids of an image record of gallery ``gid`` (none for another gallery's), without
    building the record: a rebuild lists millions."""
    data = json.loads(raw)
    return [face["id"] for face in data["faces"]] if data["gallery"] == gid else []


@dataclass
class FaceVector:
    image: int
    pack: str
    dim: int
    vector: np.ndarray


def encode_face(image_id: int, pack: str, vector: np.ndarray) -> bytes:
    """A face's record; a float16 vector is kept as float16 (half the bytes), any other as float32."""
    header = dumps({"image": image_id, "pack": pack, "dim": int(vector.shape[0])})
    half = np.asarray(vector).dtype == np.float16
    flag = _FLOAT16 if half else 0
    body = np.asarray(vector, dtype="<f2" if half else "<f4").tobytes()
    return _FACE_HEADER.pack(len(header) | flag) + header + body


def _face_parts(raw: bytes | memoryview) -> tuple[bytes, np.ndarray]:
    """A stored face split into its JSON header (not parsed) and its vector, as float32."""
    raw = bytes(raw)
    (length,) = _FACE_HEADER.unpack_from(raw)
    if length & _FLOAT16:
        length &= ~_FLOAT16
        return raw[2 : 2 + length], np.frombuffer(raw, dtype="<f2", offset=2 + length).astype(np.float32)
    return raw[2 : 2 + length], np.frombuffer(raw, dtype="<f4", offset=2 + length)


def decode_vector(raw: bytes | memoryview) -> np.ndarray:
    """A face's vector alone, its JSON header left unparsed: re-ranking and a rebuild's scan read
    nothing else, and parsing the header cost more than the rest of the read."""
    return _face_parts(raw)[1]


def decode_face(raw: bytes | memoryview) -> FaceVector:
    header, vector = _face_parts(raw)
    fields = json.loads(header)
    return FaceVector(image=fields["image"], pack=fields["pack"], dim=fields["dim"], vector=vector)


def encode_change(op: bytes, face_id: int) -> bytes:
    return _CHANGE.pack(op, face_id)


def decode_change(raw: bytes) -> tuple[bytes, int]:
    return _CHANGE.unpack(bytes(raw))
