"""The catalog's tables, created and migrated by the service itself.

Each migration is applied once, in order, in one transaction with its number recorded in
``schema_version``; every process that opens the catalog runs the ones still missing
under an advisory lock, so replicas starting together do not race. A migration is never
edited once released: a change to the schema is a new entry at the end.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg

from .database import Database, one

MIGRATION_LOCK = 0x46530001  # pg advisory lock key: "FS", 1
# images.created from created_at, where it is a time (rows copied in from before version 2)
FILL_CREATED = """
    DO $$
    DECLARE r record;
    BEGIN
        FOR r IN SELECT id, created_at FROM images WHERE created IS NULL LOOP
            BEGIN
                UPDATE images SET created = extract(epoch FROM r.created_at::timestamptz) WHERE id = r.id;
            EXCEPTION WHEN others THEN NULL;
            END;
        END LOOP;
    END $$;
"""
MIGRATIONS: tuple[str, ...] = (
    # 1: the catalog (what index.lmdb keeps), the change log that is also the vectors' outbox,
    # how far each vector collection has applied it, and the leases of bulk jobs.
    """
    CREATE TABLE catalog_meta (name text PRIMARY KEY, value text NOT NULL);
    INSERT INTO catalog_meta VALUES ('namespace', substr(md5(random()::text || clock_timestamp()::text), 1, 10));
    CREATE SEQUENCE image_ids;
    CREATE SEQUENCE face_ids;
    CREATE TABLE galleries (
        id bigserial PRIMARY KEY,
        key text NOT NULL,
        pack text,
        dim integer,
        seq bigint NOT NULL DEFAULT 0,
        images bigint NOT NULL DEFAULT 0,
        faces bigint NOT NULL DEFAULT 0,
        index_generation bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE keys (
        name text PRIMARY KEY,
        gallery bigint NOT NULL REFERENCES galleries (id),
        secret_hash text NOT NULL,
        quota bigint,
        revoked boolean NOT NULL DEFAULT false,
        created_at text NOT NULL,
        used bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE images (
        id bigint PRIMARY KEY,
        gallery bigint NOT NULL REFERENCES galleries (id),
        file text NOT NULL,
        content_type text NOT NULL,
        metadata json NOT NULL,
        created_at text NOT NULL,
        pack text NOT NULL,
        faces json NOT NULL
    );
    CREATE INDEX images_by_gallery ON images (gallery, id);
    CREATE TABLE faces (
        gallery bigint NOT NULL,
        id bigint NOT NULL,
        image bigint NOT NULL,
        pack text NOT NULL,
        bbox json NOT NULL,
        vector bytea NOT NULL,
        PRIMARY KEY (gallery, id)
    );
    CREATE TABLE changes (
        gallery bigint NOT NULL,
        seq bigint NOT NULL,
        op text NOT NULL,
        face bigint NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gallery, seq)
    );
    CREATE TABLE imported (
        gallery bigint NOT NULL,
        digest bytea NOT NULL,
        image bigint NOT NULL,
        PRIMARY KEY (gallery, digest)
    );
    CREATE TABLE staged (
        gallery bigint NOT NULL,
        face bigint NOT NULL,
        image bigint NOT NULL,
        pack text NOT NULL,
        vector bytea NOT NULL,
        PRIMARY KEY (gallery, face)
    );
    CREATE TABLE staged_images (
        gallery bigint NOT NULL,
        image bigint NOT NULL,
        pack text NOT NULL,
        PRIMARY KEY (gallery, image)
    );
    CREATE TABLE vector_progress (
        gallery bigint NOT NULL,
        collection text NOT NULL,
        applied_seq bigint NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gallery, collection)
    );
    CREATE TABLE job_batches (
        job text NOT NULL,
        batch integer NOT NULL,
        items json NOT NULL,
        claimed_by text,
        claimed_until timestamptz,
        done boolean NOT NULL DEFAULT false,
        PRIMARY KEY (job, batch)
    );
    """,
    # 2: collections and filters. Each image's collection (the default one for those stored
    # before), its creation time as seconds since the epoch (null where created_at is not a
    # time); the values its indexed metadata keys hold (``values.py``: strings as their UTF-8
    # bytes, which compare by code point as everywhere else and may hold NUL, which text may
    # not), and which keys each gallery indexes.
    """
    ALTER TABLE images ADD COLUMN collection text COLLATE "C" NOT NULL DEFAULT 'default';
    ALTER TABLE images ADD COLUMN created double precision;
    """
    + FILL_CREATED
    + """
    CREATE INDEX images_by_collection ON images (gallery, collection, id);
    CREATE INDEX images_by_created ON images (gallery, created);
    CREATE TABLE image_values (
        gallery bigint NOT NULL,
        path text NOT NULL,
        kind "char" NOT NULL,
        num double precision,
        str bytea,
        image bigint NOT NULL
    );
    CREATE INDEX image_values_by_number ON image_values (gallery, path, kind, num, image);
    CREATE INDEX image_values_by_string ON image_values (gallery, path, kind, substring(str FROM 1 FOR 400), image);
    CREATE INDEX image_values_by_image ON image_values (image);
    CREATE TABLE filter_keys (
        gallery bigint NOT NULL,
        path text NOT NULL,
        built_upto bigint,
        PRIMARY KEY (gallery, path)
    );
    """,
    # 3: persons (their faces, one of an image each, enforced by a unique index), where each
    # gallery's grouping stands, and the jobs any replica may run and report on.
    """
    CREATE SEQUENCE person_ids;
    CREATE TABLE persons (
        gallery bigint NOT NULL,
        id bigint NOT NULL,
        name text NOT NULL,
        sort_key text NOT NULL,
        metadata json NOT NULL,
        faces bigint NOT NULL,
        cover bigint,
        edited boolean NOT NULL,
        created_at text NOT NULL,
        PRIMARY KEY (gallery, id)
    );
    CREATE INDEX persons_listed ON persons (
        gallery, (name = ''), (CASE WHEN name <> '' THEN sort_key END) COLLATE "C",
        (CASE WHEN name = '' THEN -faces END), id
    );
    CREATE TABLE face_persons (
        gallery bigint NOT NULL,
        face bigint NOT NULL,
        image bigint NOT NULL,
        person bigint,
        by_user boolean NOT NULL,
        kept_out bigint,
        quality real NOT NULL,
        PRIMARY KEY (gallery, face)
    );
    CREATE UNIQUE INDEX face_persons_one_per_image ON face_persons (gallery, person, image) WHERE person IS NOT NULL;
    CREATE TABLE person_state (
        gallery bigint PRIMARY KEY,
        pending bigint NOT NULL DEFAULT 0,
        watermark bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE jobs (
        id bigserial PRIMARY KEY,
        gallery bigint NOT NULL,
        kind text NOT NULL,
        state text NOT NULL,
        params json NOT NULL,
        done bigint NOT NULL DEFAULT 0,
        total bigint NOT NULL DEFAULT 0,
        error text,
        worker text,
        lease_until double precision NOT NULL DEFAULT 0,
        created_at text NOT NULL,
        updated_at text NOT NULL
    );
    """,
)


# What a backup of an older schema lacks, by the version that added it: the columns (left to
# their defaults when its rows are copied in) and the statement that fills them afterwards.
ADDED_COLUMNS = {2: {"images": ("collection", "created")}}
FILLS = {2: FILL_CREATED}


def migrate(database: Database) -> int:
    """Apply the migrations this catalog lacks; returns its schema version."""
    with database.transaction() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz)"
        )
        cursor.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        (version,) = one(cursor)
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the catalog's schema is version {version}, newer than this service knows ({len(MIGRATIONS)}): "
                "run the newer service"
            )
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            cursor.execute(statements)
            cursor.execute("INSERT INTO schema_version VALUES (%s, now())", (number,))
        return len(MIGRATIONS)


ID_SEQUENCES = {
    "image_ids": "images",
    "face_ids": "faces",
    "galleries_id_seq": "galleries",
    "person_ids": "persons",
}


def advance_sequences(cursor: psycopg.Cursor, floor: Mapping[str, int] | None = None) -> None:
    """Move each id sequence past every id its table holds, and to ``floor``'s value at least
    (where a copied catalog's sequence stood): ids are never given out twice."""
    for sequence, table in ID_SEQUENCES.items():
        cursor.execute(
            f"SELECT setval('{sequence}', greatest((SELECT max(id) FROM {table}), %s, 1))",
            ((floor or {}).get(sequence, 1),),
        )
