"""The records kept in LMDB and their byte encodings.

Integers in keys are 8-byte big-endian so LMDB's byte order is numeric order: listing a
gallery, scanning its faces or replaying its change log is one cursor walk.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field

import numpy as np

_U64 = struct.Struct(">Q")
_FACE_HEADER = struct.Struct(">H")
_CHANGE = struct.Struct(">cQ")

ADD = b"+"
REMOVE = b"-"


def u64(value: int) -> bytes:
    return _U64.pack(value)


def pair(first: int, second: int) -> bytes:
    return _U64.pack(first) + _U64.pack(second)


def second_of(key: bytes) -> int:
    return _U64.unpack_from(key, 8)[0]


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class KeyRecord:
    """An API key: its gallery, its secret's hash and its request quota."""

    name: str
    gallery: int
    secret_hash: str
    quota: int | None = None
    revoked: bool = False
    created_at: str = ""

    def encode(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> KeyRecord:
        return cls(**json.loads(raw))


@dataclass
class GalleryRecord:
    """One key's gallery: which pack embedded it, its sizes and its change sequence."""

    key: str
    pack: str | None = None
    dim: int | None = None
    seq: int = 0
    images: int = 0
    faces: int = 0
    index_generation: int = 0  # bumped when a rebuilt index file replaces the gallery's index

    def encode(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> GalleryRecord:
        return cls(**json.loads(raw))


@dataclass
class FaceInfo:
    id: int
    bbox: list[float]
    score: float


@dataclass
class ImageRecord:
    id: int
    gallery: int
    file: str
    content_type: str
    metadata: dict
    created_at: str
    pack: str
    faces: list[FaceInfo] = field(default_factory=list)

    def encode(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> ImageRecord:
        data = json.loads(raw)
        data["faces"] = [FaceInfo(**face) for face in data["faces"]]
        return cls(**data)


@dataclass
class NewFace:
    """A face to store: where it is, how sure the detector was, and its embedding."""

    bbox: list[float]
    score: float
    embedding: np.ndarray


@dataclass
class FaceVector:
    image: int
    pack: str
    dim: int
    vector: np.ndarray


def encode_face(image_id: int, pack: str, vector: np.ndarray) -> bytes:
    header = dumps({"image": image_id, "pack": pack, "dim": int(vector.shape[0])})
    return _FACE_HEADER.pack(len(header)) + header + np.asarray(vector, dtype="<f4").tobytes()


def decode_face(raw: bytes | memoryview) -> FaceVector:
    raw = bytes(raw)
    (length,) = _FACE_HEADER.unpack_from(raw)
    header = json.loads(raw[2 : 2 + length])
    vector = np.frombuffer(raw, dtype="<f4", offset=2 + length)
    return FaceVector(image=header["image"], pack=header["pack"], dim=header["dim"], vector=vector)


def encode_change(op: bytes, face_id: int) -> bytes:
    return _CHANGE.pack(op, face_id)


def decode_change(raw: bytes) -> tuple[bytes, int]:
    return _CHANGE.unpack(bytes(raw))
