"""The embedded catalog's metadata index: which images (and faces) hold which value at a path.

For every indexed path of a gallery (its collection, its creation day, and the metadata keys
its filters use), each typed value an image holds there has a **posting**: the ids of those
images, and of their faces, as bitmaps of 65,536 consecutive ids (``index.records.IdSet``),
one LMDB row per chunk, kept as a sorted array of 16-bit offsets while it holds fewer than
4,096 ids. Beside it a **count** per value (images, faces): a collection's counts, and the
distinct values a range walks. A search or a listing turns its scope into set algebra over
postings: an equality reads one value's chunks, a range the postings of the values in range,
``$ne`` / ``$nin`` / ``$exists: false`` the complement within the gallery. Every write updates
the postings of what it changed in its own transaction.

Key layout (integers big-endian, so byte order is numeric order):

- ``postings``: gallery u64, level (``i`` images, ``f`` faces), path, 0x00, typed value, chunk u32
- ``value_counts``: gallery u64, path, 0x00, typed value -> images u64, faces u64; and gallery
  u64, 0x00 -> the gallery's stamp u64 (the id of the last write transaction that changed its
  images, which a cached selection is checked against: ``Selections``)
- ``filter_keys``: gallery u64, path -> ``r`` (ready) or ``b`` + u64 (being built: images up to
  that id are indexed)

A typed value is a tag byte and its bytes, ordered as the values are: null, a boolean, a number
(a float64 whose bytes sort as numbers do), a string (UTF-8 with 0x00 escaped, then 0x00 0x00),
or a string too long for a key (its SHA-256: equality stays exact, a range checks those images'
metadata). Creation times are indexed by UTC day: a range that starts or ends inside a day
checks that day's images. A key a gallery has not indexed (or is still indexing) is answered by
reading the metadata of the images the rest of the scope leaves: ``select`` falls back to that
check for whatever the postings cannot answer exactly (``maybe``).

Indexing a key on an existing gallery (``build``) walks its images in id order, a batch per
write transaction, and notes how far it got: writes meanwhile keep the postings of the images
already walked, and the walk reads the others as they are when it reaches them, so each image
is counted once however the two interleave.
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lmdb
import numpy as np

from ..filters import (
    COLLECTION,
    CREATED,
    EQ,
    GT,
    GTE,
    IN,
    LT,
    LTE,
    NEGATED,
    NUMBER,
    RESERVED,
    STRING,
    AllOf,
    AnyOf,
    Compare,
    Exists,
    Expr,
    Facts,
    created_seconds,
    kind,
    matches,
    resolve,
    satisfies,
    typed,
)
from ..records import CHUNK_BITS, CHUNK_BYTES, CollectionCount, IdSet, ImageRecord
from .encoding import decode_image, second_of, u64
from .environment import Environment

IMAGES, FACES = b"i", b"f"
EXISTS, NULL_TAG, BOOL_TAG, NUM_TAG, STR_TAG, LONG_TAG = b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"
READY, BUILDING = b"r", b"b"
KEY_ROOM = 480  # bytes of a posting's key left for path and value: LMDB keys hold at most 511
ARRAY_BELOW = 4096  # a chunk holding fewer ids is kept as their 16-bit offsets, else as its bitmap
DAY = 86400.0
STAMP = b"\x00"  # after a gallery's id in ``value_counts``: its stamp (no path is empty)
# bitmaps of recent selections kept per process: a selection of a million faces takes up to 128 KiB
SELECTIONS_BYTES = 64 << 20
BUILD_BATCH = 2000  # images indexed per write transaction of a build
_COUNTS = struct.Struct(">QQ")
_CHUNK = struct.Struct(">I")

Entry = tuple[str, bytes]  # (path, typed value)
Records = Callable[[IdSet], Iterator[ImageRecord]]  # reads the records of images by id


# -- typed values as key bytes -----------------------------------------------------------------


def encode_number(value: float) -> bytes:
    """A float64 as 8 bytes whose order is the numbers' order."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", value + 0.0))  # + 0.0: -0.0 is 0.0
    return struct.pack(">Q", bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | 1 << 63)


def decode_number(raw: bytes) -> float:
    (bits,) = struct.unpack(">Q", raw)
    bits = bits ^ 1 << 63 if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
    return float(struct.unpack(">d", struct.pack(">Q", bits))[0])


def encode_string(text: str) -> bytes:
    """UTF-8 with 0x00 escaped and a terminator that sorts first: the strings' order."""
    return text.encode().replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def decode_string(raw: bytes) -> str:
    return raw[:-2].replace(b"\x00\xff", b"\x00").decode()


def value_bytes(path: str, sort: str, value: object) -> bytes:
    """A stored scalar's typed value as key bytes (``typed`` says what it compares as)."""
    if sort == NUMBER:
        return NUM_TAG + encode_number(float(value))
    if sort == STRING:
        encoded = encode_string(str(value))
        if len(encoded) <= KEY_ROOM - len(path.encode()) - 1 - 1 - _CHUNK.size:
            return STR_TAG + encoded
        return LONG_TAG + hashlib.sha256(str(value).encode()).digest()
    if value is None:
        return NULL_TAG
    return BOOL_TAG + (b"\x01" if value else b"\x00")


def entries_of(record: ImageRecord, paths: Iterable[str]) -> set[Entry]:
    """What the postings of ``paths`` hold for one image."""
    found: set[Entry] = set()
    for path in paths:
        if path == COLLECTION:
            found |= {(path, EXISTS), (path, value_bytes(path, STRING, record.collection))}
        elif path == CREATED:
            seconds = created_seconds(record.created_at)
            if seconds is not None:
                found |= {(path, EXISTS), (path, NUM_TAG + encode_number(math.floor(seconds / DAY)))}
        else:
            present, values = resolve(record.metadata, path)
            if present:
                found.add((path, EXISTS))
                found |= {(path, value_bytes(path, sort, v)) for value in values for sort, v in typed(value)}
    return found


def _stamp_key(gid: int) -> bytes:
    return u64(gid) + STAMP


# -- chunks ------------------------------------------------------------------------------------


def load_chunk(raw: bytes | None) -> np.ndarray:
    if raw is None:
        return np.zeros(CHUNK_BYTES, np.uint8)
    if len(raw) == CHUNK_BYTES:
        return np.frombuffer(raw, np.uint8).copy()
    mask = np.zeros(1 << CHUNK_BITS, bool)
    mask[np.frombuffer(raw, "<u2")] = True
    return np.packbits(mask, bitorder="little")


def store_chunk(bits: np.ndarray) -> bytes | None:
    count = int(np.bitwise_count(bits).sum())
    if not count:
        return None
    if count >= ARRAY_BELOW:
        return bits.tobytes()
    return np.flatnonzero(np.unpackbits(bits, bitorder="little")).astype("<u2").tobytes()


class _Delta:
    """The postings and counts one write changes, gathered so that each posting chunk and each
    count is read and written once per write, however many images change it."""

    def __init__(self, gid: int) -> None:
        self.gid = gid
        self.bits: dict[bytes, tuple[list[int], list[int]]] = {}  # chunk key -> (offsets set, offsets cleared)
        self.counts: dict[bytes, list[int]] = {}  # count key -> [images, faces] to add

    def entries(self, record: ImageRecord, entries: set[Entry], sign: int) -> None:
        faces = [face.id for face in record.faces]
        for path, value in entries:
            self.ids(IMAGES, path, value, [record.id], sign > 0)
            self.ids(FACES, path, value, faces, sign > 0)
            self.count(path, value, sign, sign * len(faces))

    def ids(self, level: bytes, path: str, value: bytes, ids: list[int], on: bool) -> None:
        prefix = u64(self.gid) + level + path.encode() + b"\x00" + value
        for one in ids:
            key = prefix + _CHUNK.pack(one >> CHUNK_BITS)
            self.bits.setdefault(key, ([], []))[0 if on else 1].append(one & ((1 << CHUNK_BITS) - 1))

    def count(self, path: str, value: bytes, images: int, faces: int) -> None:
        totals = self.counts.setdefault(u64(self.gid) + path.encode() + b"\x00" + value, [0, 0])
        totals[0] += images
        totals[1] += faces

    def apply(self, txn: lmdb.Transaction, env: Environment) -> None:
        postings, counts = env.db["postings"], env.db["value_counts"]
        for key, (on, off) in self.bits.items():
            chunk: np.ndarray = load_chunk(txn.get(key, db=postings))
            mask = np.unpackbits(chunk, bitorder="little").view(bool)
            mask[off] = False
            mask[on] = True
            stored = store_chunk(np.packbits(mask, bitorder="little"))
            if stored is None:
                txn.delete(key, db=postings)
            else:
                txn.put(key, stored, db=postings)
        for key, (images, faces) in self.counts.items():
            raw = txn.get(key, db=counts)
            had = _COUNTS.unpack(raw) if raw is not None else (0, 0)
            now = (had[0] + images, had[1] + faces)
            if now[0] <= 0:
                txn.delete(key, db=counts)
            else:
                txn.put(key, _COUNTS.pack(*now), db=counts)
        self.bits, self.counts = {}, {}


class Selections:
    """Recent selections of this process, least recently used dropped first past ``most_bytes``
    of bitmaps: a client searches with the same filter again and again, and resolving it reads
    and joins the postings of up to millions of ids every time.

    A selection is kept with the gallery's stamp (``Attributes.stamp``) of the read transaction
    that resolved it and answered only to a read transaction that sees the same stamp, so a
    write to the gallery (from any process) is seen by the next search, as without the cache.
    Keyed by the tree's ``repr``, which tells ``1`` from ``True`` (equal, and equally hashed, as
    Python values). The sets handed out are shared: no caller changes an ``IdSet`` in place."""

    def __init__(self, most_bytes: int = SELECTIONS_BYTES) -> None:
        self.most_bytes = most_bytes
        self.held: OrderedDict[tuple[int, bytes, str], tuple[int, IdSet]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: tuple[int, bytes, str], stamp: int) -> IdSet | None:
        with self.lock:
            found = self.held.get(key)
            if found is None or found[0] != stamp:
                return None
            self.held.move_to_end(key)
            return found[1]

    def put(self, key: tuple[int, bytes, str], stamp: int, selected: IdSet) -> None:
        size = _bytes(selected)
        if size > self.most_bytes:
            return
        with self.lock:
            if key in self.held:
                self.bytes -= _bytes(self.held.pop(key)[1])
            self.held[key] = (stamp, selected)
            self.bytes += size
            while self.bytes > self.most_bytes:
                _, (_, dropped) = self.held.popitem(last=False)
                self.bytes -= _bytes(dropped)


def _bytes(ids: IdSet) -> int:
    return sum(bits.nbytes for bits in ids.chunks.values())


class Attributes:
    """The postings, counts and key registry of every gallery (one per catalog)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.selections = Selections()

    # -- the stamp of a gallery's last write --------------------------------------------------

    def touch(self, txn: lmdb.Transaction, gid: int) -> None:
        """Note that this write transaction changes the gallery's images (what ``select`` reads):
        its stamp becomes the transaction's id, which no other write of the environment shares."""
        txn.put(_stamp_key(gid), u64(txn.id()), db=self.env.db["value_counts"])

    def stamp(self, txn: lmdb.Transaction, gid: int) -> int:
        """The id of the last write transaction that changed the gallery's images (0: none since
        stamps were kept)."""
        raw = txn.get(_stamp_key(gid), db=self.env.db["value_counts"])
        return int.from_bytes(raw, "big") if raw is not None else 0

    # -- the registry of indexed paths -------------------------------------------------------

    def registry(self, txn: lmdb.Transaction, gid: int) -> dict[str, int | None]:
        """Each indexed path of the gallery: None when ready, else the last image id indexed so far."""
        found: dict[str, int | None] = {}
        for key, raw in self.env.walk(txn, "filter_keys", u64(gid)):
            path = bytes(key[8:]).decode()
            found[path] = None if raw[:1] == READY else int.from_bytes(raw[1:9], "big")
        return found

    def maintained(self, txn: lmdb.Transaction, gid: int, image_id: int) -> list[str]:
        """The paths a write to this image keeps indexed: ready ones, and those being built that
        have reached it."""
        return [path for path, upto in self.registry(txn, gid).items() if upto is None or image_id <= upto]

    def start_gallery(self, txn: lmdb.Transaction, gid: int) -> None:
        """A new gallery's reserved paths, ready at once: it holds nothing yet."""
        for path in RESERVED:
            txn.put(u64(gid) + path.encode(), READY, db=self.env.db["filter_keys"])

    def register(self, gid: int, paths: Iterable[str], most: int) -> list[str]:
        """Start indexing ``paths`` the gallery does not index yet, as long as it indexes at most
        ``most`` metadata keys; the paths that are now being built (an empty gallery's are ready)."""

        def register(txn: lmdb.Transaction) -> list[str]:
            known = self.registry(txn, gid)
            own = sum(path not in RESERVED for path in known)
            started = []
            empty = self.env.gallery(txn, gid).images == 0
            for path in paths:
                if path in known or (path not in RESERVED and own >= most):
                    continue
                own += path not in RESERVED
                state = READY if empty else BUILDING + u64(0)
                txn.put(u64(gid) + path.encode(), state, db=self.env.db["filter_keys"])
                if not empty:
                    started.append(path)
            return started

        return self.env.write(register)

    def build(self, gid: int, path: str, batches: int | None = None, batch: int = BUILD_BATCH) -> bool:
        """Index ``path`` over the gallery's images, a batch per write transaction (see the module),
        ``batches`` at most; whether it is done."""
        done, steps = False, 0
        while not done and (batches is None or steps < batches):
            steps += 1

            def step(txn: lmdb.Transaction) -> bool:
                state = self.registry(txn, gid).get(path, -1)
                if state is None or state == -1:
                    return True  # ready, or no longer registered
                upto = int(state)
                last, walked, delta = upto, 0, _Delta(gid)
                for key, _ in self.env.walk(txn, "gallery_images", u64(gid), start=u64(gid) + u64(upto + 1)):
                    image_id = second_of(key)
                    record = decode_image(txn.get(u64(image_id), db=self.env.db["images"]))
                    delta.entries(record, entries_of(record, [path]), +1)
                    last, walked = image_id, walked + 1
                    if walked == batch:
                        delta.apply(txn, self.env)
                        txn.put(u64(gid) + path.encode(), BUILDING + u64(last), db=self.env.db["filter_keys"])
                        return False
                delta.apply(txn, self.env)
                txn.put(u64(gid) + path.encode(), READY, db=self.env.db["filter_keys"])
                return True

            done = self.env.write(step)
        return done

    # -- keeping postings in step with writes --------------------------------------------------

    def added(self, txn: lmdb.Transaction, gid: int, records: list[ImageRecord]) -> None:
        """New images: a bulk write's images change each posting chunk once, not once per image."""
        self.touch(txn, gid)
        delta = _Delta(gid)
        for record in records:
            delta.entries(record, entries_of(record, self.maintained(txn, gid, record.id)), +1)
        delta.apply(txn, self.env)

    def removed(self, txn: lmdb.Transaction, gid: int, record: ImageRecord) -> None:
        self.touch(txn, gid)
        delta = _Delta(gid)
        delta.entries(record, entries_of(record, self.maintained(txn, gid, record.id)), -1)
        delta.apply(txn, self.env)

    def changed(self, txn: lmdb.Transaction, gid: int, before: ImageRecord, after: ImageRecord) -> None:
        self.touch(txn, gid)
        paths = self.maintained(txn, gid, before.id)
        old, new = entries_of(before, paths), entries_of(after, paths)
        delta = _Delta(gid)
        delta.entries(before, old - new, -1)
        delta.entries(after, new - old, +1)
        delta.apply(txn, self.env)

    def faces_dropped(self, txn: lmdb.Transaction, gid: int, record: ImageRecord, face_ids: list[int]) -> None:
        """Faces of ``record`` removed while the image stays (a re-embedding that lost them)."""
        self.touch(txn, gid)
        delta = _Delta(gid)
        for path, value in entries_of(record, self.maintained(txn, gid, record.id)):
            delta.ids(FACES, path, value, face_ids, False)
            delta.count(path, value, 0, -len(face_ids))
        delta.apply(txn, self.env)

    # -- reading -----------------------------------------------------------------------------

    def collections(self, txn: lmdb.Transaction, gid: int) -> dict[str, CollectionCount] | None:
        """Each collection's counts, from the index; None when the gallery's collections are not
        indexed yet."""
        if self.registry(txn, gid).get(COLLECTION, -1) is not None:
            return None
        prefix = u64(gid) + COLLECTION.encode() + b"\x00" + STR_TAG
        return {
            decode_string(bytes(key[len(prefix) :])): CollectionCount(*_COUNTS.unpack(raw))
            for key, raw in self.env.walk(txn, "value_counts", prefix)
        }

    def select(self, txn: lmdb.Transaction, gid: int, expr: Expr, level: bytes, records: Records) -> IdSet:
        """The ids (of ``level``) of the images that pass ``expr``, and of their faces; what the
        postings cannot answer is checked on the images' metadata (``records`` reads them).
        The same tree over an unchanged gallery is answered from ``selections``."""
        key, stamp = (gid, level, repr(expr)), self.stamp(txn, gid)
        found = self.selections.get(key, stamp)
        if found is None:
            found = self._select(txn, gid, expr, level, records)
            self.selections.put(key, stamp, found)
        return found

    def _select(self, txn: lmdb.Transaction, gid: int, expr: Expr, level: bytes, records: Records) -> IdSet:
        resolver = _Resolver(self.env, txn, gid, level, self.registry(txn, gid))
        if resolver.universe is None:  # collections not indexed yet: every image is read
            return _checked(expr, resolver.everything(), level, records)
        sure, maybe = resolver.resolve(expr)
        if not maybe:
            return sure
        if level == FACES:  # the images behind the faces in doubt
            maybe = _Resolver(self.env, txn, gid, IMAGES, resolver.registry).resolve(expr)[1]
        return sure | _checked(expr, maybe, level, records)


def _checked(expr: Expr, images: IdSet, level: bytes, records: Records) -> IdSet:
    """Of ``images``, the ids (of ``level``) of those whose record passes ``expr``."""
    passed: list[int] = []
    for record in records(images):
        facts = Facts(record.metadata, record.collection, created_seconds(record.created_at))
        if matches(expr, facts):
            passed.extend([face.id for face in record.faces] if level == FACES else [record.id])
    return IdSet.of(passed)


class _Resolver:
    """One scope resolved over the postings of one level, in one read transaction: each node as
    (sure, maybe), the ids that pass for certain and those whose metadata must be checked."""

    def __init__(
        self, env: Environment, txn: lmdb.Transaction, gid: int, level: bytes, registry: dict[str, int | None]
    ) -> None:
        self.env, self.txn, self.gid, self.level, self.registry = env, txn, gid, level, registry
        ready = registry.get(COLLECTION, -1) is None
        self.universe = self.posting(COLLECTION, EXISTS) if ready else None  # every image is in a collection

    def everything(self) -> IdSet:
        """Every image of the gallery, from its list of ids (for the check)."""
        ids = [second_of(key) for key, _ in self.env.walk(self.txn, "gallery_images", u64(self.gid))]
        return IdSet.of(ids)

    def posting(self, path: str, value: bytes) -> IdSet:
        return self.postings(path, [value])

    def postings(self, path: str, values: Iterable[bytes]) -> IdSet:
        """The union of the postings of ``values`` at ``path``, joined a chunk number at a time:
        the bitmaps OR-ed, the short chunks' offsets gathered and set in one mask (a range over
        many values reads hundreds of short chunks, each of which ``load_chunk`` would expand
        to a whole bitmap)."""
        bitmaps: dict[int, np.ndarray] = {}
        offsets: dict[int, list[np.ndarray]] = {}
        for value in values:
            prefix = u64(self.gid) + self.level + path.encode() + b"\x00" + value
            for key, raw in self.env.walk(self.txn, "postings", prefix):
                if len(key) != len(prefix) + _CHUNK.size:
                    continue  # a longer value that starts with this one (the EXISTS tag is every value's prefix)
                (number,) = _CHUNK.unpack(bytes(key[-_CHUNK.size :]))
                if len(raw) == CHUNK_BYTES:
                    bits = np.frombuffer(raw, np.uint8)
                    bitmaps[number] = bitmaps[number] | bits if number in bitmaps else bits.copy()
                else:
                    offsets.setdefault(number, []).append(np.frombuffer(raw, "<u2").copy())
        for number, parts in offsets.items():
            mask = np.zeros(1 << CHUNK_BITS, bool)
            mask[np.concatenate(parts)] = True
            bits = np.packbits(mask, bitorder="little")
            bitmaps[number] = bitmaps[number] | bits if number in bitmaps else bits
        return IdSet(bitmaps)

    def values(self, path: str, tag: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(typed value, its bytes after the tag) of the values of one type at ``path``, in order,
        from the first whose bytes are ``start`` or after."""
        prefix = u64(self.gid) + path.encode() + b"\x00" + tag
        for key, _ in self.env.walk(self.txn, "value_counts", prefix, start=prefix + start):
            yield bytes(key[len(prefix) - 1 :]), bytes(key[len(prefix) :])

    def resolve(self, expr: Expr) -> tuple[IdSet, IdSet]:
        assert self.universe is not None
        if isinstance(expr, AllOf):
            parts = [self.resolve(term) for term in expr.terms]
            sure, either = parts[0][0], parts[0][0] | parts[0][1]
            for part_sure, part_maybe in parts[1:]:
                sure, either = sure & part_sure, either & (part_sure | part_maybe)
            return sure, either - sure
        if isinstance(expr, AnyOf):
            parts = [self.resolve(term) for term in expr.terms]
            sure = IdSet()
            maybe = IdSet()
            for part_sure, part_maybe in parts:
                sure, maybe = sure | part_sure, maybe | part_maybe
            return sure, maybe - sure
        if self.registry.get(expr.path, -1) is not None:  # not indexed (yet): every image in doubt
            return IdSet(), self.universe
        if isinstance(expr, Exists):
            present = self.posting(expr.path, EXISTS)
            return (present, IdSet()) if expr.present else (self.universe - present, IdSet())
        if expr.op in NEGATED:
            sure, maybe = self.resolve(Compare(expr.path, NEGATED[expr.op], expr.value))
            return self.universe - (sure | maybe), maybe
        if expr.path == CREATED:
            return self.created(expr.op, float(expr.value))
        return self.compare(expr.path, expr.op, expr.value)

    def compare(self, path: str, op: str, operand: Any) -> tuple[IdSet, IdSet]:
        if op in (EQ, IN):
            operands = operand if op == IN else (operand,)
            return self.postings(path, [value_bytes(path, kind(one), one) for one in operands]), IdSet()
        sort = kind(operand)
        maybe = IdSet()
        tag = NUM_TAG if sort == NUMBER else STR_TAG
        upward = op in (GT, GTE)  # a walk up from the bound; a walk down stops at it
        bound = encode_number(float(operand)) if sort == NUMBER else encode_string(str(operand))[:-2]
        inside: list[bytes] = []
        for value, payload in self.values(path, tag, bound if upward else b""):
            stored = decode_number(payload) if tag == NUM_TAG else decode_string(payload)
            if satisfies(op, stored, operand):
                inside.append(value)
            elif not upward:
                break
        sure = self.postings(path, inside)
        if sort == STRING:  # strings too long for a key: their images' metadata says
            maybe = self.postings(path, [value for value, _ in self.values(path, LONG_TAG)])
        return sure, maybe - sure

    def created(self, op: str, seconds: float) -> tuple[IdSet, IdSet]:
        """Creation times are indexed by day: the days wholly in range are sure, the day the
        bound falls inside is in doubt."""
        day, inside = math.floor(seconds / DAY), seconds / DAY != math.floor(seconds / DAY)
        sure: list[bytes] = []
        maybe: list[bytes] = []
        for value, payload in self.values(CREATED, NUM_TAG):
            stored = decode_number(payload)
            if stored == day:
                # a bound at midnight: the whole day is after it (>=), or none of it before it (<)
                whole = not inside and op == GTE
                if whole:
                    sure.append(value)
                elif inside or op != LT:
                    maybe.append(value)
            elif (op in (GT, GTE) and stored > day) or (op in (LT, LTE) and stored < day):
                sure.append(value)
        return self.postings(CREATED, sure), self.postings(CREATED, maybe)


class LmdbMetadataIndex:
    """``index.catalog.MetadataIndex`` over the postings."""

    def __init__(self, env: Environment, attributes: Attributes) -> None:
        self.env, self.attributes = env, attributes

    def keys(self, gid: int) -> dict[str, bool]:
        return {
            path: upto is None for path, upto in self.env.read(lambda txn: self.attributes.registry(txn, gid)).items()
        }

    def start(self, gid: int, paths: Iterable[str], most: int) -> list[str]:
        return self.attributes.register(gid, paths, most)

    def build(self, gid: int, path: str, batches: int | None = None) -> bool:
        return self.attributes.build(gid, path, batches)
