"""The one way faces leave the LMDB catalog: an image deleted, a person forgotten, a
re-embedding that lost faces all drop faces here, and the images left with none."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

import lmdb

from ..records import ImageRecord
from .attributes import Attributes
from .encoding import decode_image, encode, pair, u64
from .environment import Environment


def drop_faces(
    env: Environment,
    txn: lmdb.Transaction,
    gid: int,
    by_image: Mapping[int, Collection[int] | None],
    keep_empty: bool = False,
) -> tuple[list[ImageRecord], list[int]]:
    """Drop faces of the gallery's images (None: every face of the image) in ``txn``: their
    vectors (each removal logged for the vector indexes), their metadata postings, their place in
    the image records; an image left with no face is deleted whole, unless ``keep_empty`` (a
    re-embedding keeps a photo whose faces its new models no longer find). Images of another
    gallery and unknown ones are skipped. Returns (the images deleted, in the order given; the
    ids of the images that kept some face). The persons the faces were in are the caller's
    (``index.persons``), in the same transaction."""
    gallery = env.gallery(txn, gid)
    attributes = Attributes(env)
    deleted: list[ImageRecord] = []
    changed: list[int] = []
    for image_id, chosen in by_image.items():
        raw = txn.get(u64(image_id), db=env.db["images"])
        record = decode_image(raw) if raw is not None else None
        if record is None or record.gallery != gid:
            continue
        dropped = [face.id for face in record.faces if chosen is None or face.id in chosen]
        kept = [face for face in record.faces if chosen is not None and face.id not in chosen]
        for face in dropped:
            env.remove_face(txn, gid, gallery, face)
        if kept or keep_empty:
            if dropped:
                attributes.faces_dropped(txn, gid, record, dropped)
                txn.put(u64(image_id), encode(replace(record, faces=kept)), db=env.db["images"])
                changed.append(image_id)
            continue
        attributes.removed(txn, gid, record)
        txn.delete(u64(image_id), db=env.db["images"])
        txn.delete(pair(gid, image_id), db=env.db["gallery_images"])
        gallery.images -= 1
        deleted.append(record)
    if deleted or changed:
        env.put_gallery(txn, gid, gallery)
    return deleted, changed
