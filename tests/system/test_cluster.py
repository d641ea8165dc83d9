"""Cluster mode end to end: two API replicas on one PostgreSQL, one Milvus and one photo
folder, all real processes, and real SIGKILLs of each component while a client streams adds."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from index.postgres import PostgresCatalog
from index.postgres.database import RESOLVE_SECONDS
from service.core.photos import ORPHAN_GRACE_SECONDS, THUMBNAIL_SUFFIX
from service.harness.engines import Milvus, Postgres
from service.harness.live import LiveServer
from service.harness.photos import b64
from tests.cluster import Engines, Replicas
from tests.live import ROOT
from tests.system.test_crash import PHOTOS

pytestmark = pytest.mark.cluster

FAST = 5.0  # seconds: a request meeting a component down must be refused within this


@pytest.fixture(scope="module")
def replicas(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    # no per-replica rate limit: the checks read back every acknowledged photo
    made = Replicas(engines, tmp_path_factory.mktemp("cluster"), {"FACE_SEARCH_RATE_LIMIT": "0"}).start()
    yield made
    made.stop()


def _key(replicas: Replicas, quota: int | None = None) -> tuple[str, str]:
    made = replicas.keys(lambda ring: ring.create(quota=quota))
    return made.record.name, made.secret


def _add(server: LiveServer, auth: tuple[str, str], photo: int) -> requests.Response:
    body = {"image": {"base64": b64(PHOTOS[photo]), "metadata": {"p": photo}}}
    return server.call("POST", "/images", *auth, json=body)


def _found(server: LiveServer, auth: tuple[str, str], photo: bytes, deadline: float = 0.0) -> set[int]:
    """The images the photo finds (its own copies), retried until ``deadline`` while storage is unavailable."""
    while True:
        answer = server.call(
            "POST", "/search", *auth, json={"image": {"base64": b64(photo)}, "top_k": 1000, "threshold": 0.95}
        )
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert answer.status_code == 200, answer.text
    return {hit["id"] for hit in answer.json()["result"]}


def _listed(server: LiveServer, auth: tuple[str, str]) -> dict[int, dict]:
    listed: dict[int, dict] = {}
    while True:
        page = server.call("GET", f"/images?offset={len(listed)}&limit=1000", *auth).json()
        listed.update({item["id"]: item for item in page["result"]})
        if len(listed) >= page["total"] or not page["result"]:
            return listed


def test_a_write_on_one_replica_is_read_on_the_other(replicas: Replicas) -> None:
    one, other = replicas.servers
    auth = _key(replicas)
    added = _add(one, auth, 0).json()["result"]
    assert other.call("GET", f"/images/{added['id']}", *auth).json()["result"]["metadata"] == {"p": 0}
    assert list(_listed(other, auth)) == [added["id"]]
    assert _found(other, auth, PHOTOS[0]) == {added["id"]}, "searched on the other replica right after the add"
    one.call("PUT", f"/images/{added['id']}", *auth, json={"metadata": {"renamed": True}})
    assert other.call("GET", f"/images/{added['id']}", *auth).json()["result"]["metadata"] == {"renamed": True}
    assert other.call("DELETE", "/images", *auth, json={"ids": [added["id"]]}).json()["deleted"] == 1
    assert _found(one, auth, PHOTOS[0]) == set(), "a face deleted on one replica is never answered by the other"
    assert other.call("GET", f"/images/{added['id']}/file", *auth).status_code == 404


def test_keys_are_isolated_and_quotas_counted_across_replicas(replicas: Replicas) -> None:
    one, other = replicas.servers
    mine, theirs = _key(replicas), _key(replicas)
    image = _add(one, mine, 2).json()["result"]["id"]
    assert _found(other, theirs, PHOTOS[2]) == set() and _listed(other, theirs) == {}
    assert other.call("GET", f"/images/{image}", *theirs).status_code == 404
    limited = _key(replicas, quota=3)
    codes = [server.call("GET", "/images", *limited).json()["status_code"] for server in (one, other, one, other)]
    assert codes == [0, 0, 0, 4], "three requests in all, whichever replica answered them"


def test_a_link_made_by_one_replica_works_on_the_other_until_the_secret_is_rotated(replicas: Replicas) -> None:
    """The link secret is the cluster's (in PostgreSQL), not a replica's: a page may load a photo
    from whichever replica the load balancer picks, and one rotation reaches them all."""
    one, other = replicas.servers
    auth = _key(replicas)
    added = _add(one, auth, 2).json()["result"]
    assert requests.get(added["url"].replace(one.url, other.url), timeout=30).content == PHOTOS[2]
    thumbnail = requests.get(added["thumbnail_url"].replace(one.url, other.url), timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    done = subprocess.run(
        [sys.executable, "scripts/keys.py", "rotate-link-secret"], cwd=ROOT, env=one.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for server in (one, other):
        refused = requests.get(added["url"].replace(one.url, server.url), timeout=30)
        assert refused.status_code == 403 and refused.json()["status_code"] == 14
    fresh = other.call("GET", f"/images/{added['id']}", *auth).json()["result"]["url"]
    assert requests.get(fresh.replace(other.url, one.url), timeout=30).content == PHOTOS[2]


@contextmanager
def _restarted(server: Milvus | Postgres) -> Iterator[None]:
    """The block kills the server; it is started again (same ports, same data) when the block ends."""
    try:
        yield
    finally:
        server.start()
        time.sleep(2)  # the replicas' next tries reach it


@contextmanager
def _streaming_adds(server: LiveServer, auth: tuple[str, str]) -> Iterator[tuple[dict[int, int], list]]:
    """A client adding photos for the length of the block: (image id to photo of every
    acknowledged add, (status, body, seconds) of every refusal)."""
    acknowledged: dict[int, int] = {}
    refused: list = []
    stop = threading.Event()
    writer = threading.Thread(target=_stream_adds, args=(server, auth, acknowledged, refused, stop))
    writer.start()
    try:
        yield acknowledged, refused
    finally:
        stop.set()
        writer.join(timeout=60)


def _stream_adds(server: LiveServer, auth: tuple[str, str], acknowledged: dict[int, int], refused: list, stop) -> None:
    index = 0
    while not stop.is_set():
        photo = index % len(PHOTOS)
        started = time.monotonic()
        try:
            answer = _add(server, auth, photo)
        except requests.RequestException:
            return
        if answer.status_code == 200:
            acknowledged[answer.json()["result"]["id"]] = photo
        else:
            refused.append((answer.status_code, answer.json(), time.monotonic() - started))
            time.sleep(0.2)
        index += 1


def _check_everything_acknowledged(replicas: Replicas, auth: tuple[str, str], acknowledged: dict[int, int]) -> None:
    one, other = replicas.servers
    listed = _listed(other, auth)
    assert not set(acknowledged) - set(listed), "acknowledged adds lost"
    deadline = time.monotonic() + 60
    while True:  # once the outbox has drained, every acknowledged add is searchable
        missing = {
            image
            for index, photo in enumerate(PHOTOS)
            for image in {i for i, p in acknowledged.items() if p == index} - _found(one, auth, photo, deadline)
        }
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"acknowledged adds not searchable: {sorted(missing)}"
    for image_id in listed:
        assert other.call("GET", f"/images/{image_id}/file", *auth).status_code == 200, "a record without its photo"


def _no_orphan_photos(replicas: Replicas) -> None:
    catalog = PostgresCatalog(replicas.catalog_url)
    try:
        files = catalog.images.files()
    finally:
        catalog.close()
    # a thumbnail is its photo's: live while the photo has a record
    on_disk = {p.relative_to(replicas.photo_dir).as_posix() for p in replicas.photo_dir.glob("*/*")}
    photos = {name.removesuffix(THUMBNAIL_SUFFIX) for name in on_disk}
    assert photos == files, f"photos without a record: {sorted(photos - files)}"


def _refused_fast_with_code_12(refused: list) -> None:
    """Every refusal is code 12 within FAST seconds, but for an add whose commit was on its way when
    PostgreSQL died: that one waits for the server to come back and say (``RESOLVE_SECONDS`` at most)."""
    assert refused, "some requests met the component down"
    for status, body, seconds in refused:
        assert (status, body["status_code"]) == (503, 12), body
        assert "unavailable" in body["message"].lower() or "cannot be reached" in body["message"], body
        in_doubt = "went away during" in body["message"]
        assert seconds < (RESOLVE_SECONDS + FAST if in_doubt else FAST), f"a refusal took {seconds:.1f}s: {body}"


def _ready(server: LiveServer) -> dict:
    return requests.get(server.url + "/readyz", timeout=30).json()["checks"]


def test_sigkill_milvus_during_adds_loses_nothing_acknowledged(replicas: Replicas, engines: Engines) -> None:
    one, other = replicas.servers
    auth = _key(replicas)
    with _restarted(engines.milvus), _streaming_adds(one, auth) as (acknowledged, refused):
        time.sleep(2)
        engines.milvus.kill()
        before = len(acknowledged)
        time.sleep(3)
        started = time.monotonic()
        search = other.call("POST", "/search", *auth, json={"image": {"base64": b64(PHOTOS[0])}})
        assert (search.status_code, search.json()["status_code"]) == (503, 12), search.text
        assert time.monotonic() - started < FAST, "a search fails fast while Milvus is down"
        assert _ready(other)["milvus"] is False and _ready(other)["postgres"] is True
        assert len(acknowledged) > before, "adds are acknowledged while Milvus is down: PostgreSQL holds them"
    assert not refused, f"an add was refused while only Milvus was down: {refused[:1]}"
    _check_everything_acknowledged(replicas, auth, acknowledged)
    assert _ready(other)["milvus"] is True


def test_sigkill_postgres_during_adds_loses_nothing_and_leaves_no_orphan(replicas: Replicas, engines: Engines) -> None:
    one, other = replicas.servers
    auth = _key(replicas)
    # the server is back before the client stops: an add whose commit was on its way at the kill
    # waits for it, to answer whether it was stored
    with _streaming_adds(one, auth) as (acknowledged, refused), _restarted(engines.postgres):
        time.sleep(2)
        engines.postgres.kill()
        time.sleep(4)
        assert _ready(other)["postgres"] is False
        listing = other.call("GET", "/images", *auth)
        assert (listing.status_code, listing.json()["status_code"]) == (503, 12), listing.text
    _refused_fast_with_code_12(refused)
    _check_everything_acknowledged(replicas, auth, acknowledged)
    listed = _listed(other, auth)
    assert len(set(listed) - set(acknowledged)) <= 1, "at most the add in flight at the kill may have committed"
    _no_orphan_photos(replicas)
    assert _ready(one)["postgres"] is True, "the pool reconnected by itself"


@contextmanager
def _slow_commits(url: str, seconds: float) -> Iterator[None]:
    """Every commit that stored an image waits ``seconds`` inside PostgreSQL (a deferred
    trigger, run at COMMIT), so a test can kill the server while a commit is on its way."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        )
        connection.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON images DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("DROP TRIGGER slow_commit ON images")
            connection.execute("DROP FUNCTION slow_commit()")


def _committing(url: str, deadline: float) -> bool:
    """Whether a commit is held in the slow-commit trigger, waited for until ``deadline``."""
    with psycopg.connect(url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            held = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'").fetchone()
            if held and held[0]:
                return True
            time.sleep(0.05)
    return False


def test_an_add_whose_commit_postgresql_never_finished_is_refused_without_its_photo_once_it_is_back(
    replicas: Replicas, engines: Engines
) -> None:
    """The connection is lost while the add's commit is on its way, so the replica cannot know
    whether it landed: it waits for PostgreSQL to come back, finds the image absent, and only then
    refuses the add and deletes its photo (one that did land would keep its photo and be acknowledged)."""
    one, _ = replicas.servers
    auth = _key(replicas)
    answers: list[requests.Response] = []
    with _slow_commits(replicas.catalog_url, seconds=20):
        add = threading.Thread(target=lambda: answers.append(_add(one, auth, 0)))
        add.start()
        try:
            assert _committing(replicas.catalog_url, time.monotonic() + 60), "the add reached its commit"
            with _restarted(engines.postgres):
                engines.postgres.kill()
                time.sleep(1)
        finally:
            add.join(timeout=60)
    (answer,) = answers
    body = answer.json()
    assert (answer.status_code, body["status_code"]) == (503, 12), body
    assert "went away during the commit; the image was not stored" in body["message"], body
    assert _listed(one, auth) == {}
    _no_orphan_photos(replicas)


def _orphan(replicas: Replicas, name: str, age: float) -> Path:
    """A photo file no record names, last written ``age`` seconds ago."""
    path = replicas.photo_dir / "999999" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(PHOTOS[0])
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_sigkill_of_a_replica_leaves_the_other_serving(replicas: Replicas, tmp_path: Path) -> None:
    one, other = replicas.servers
    auth = _key(replicas)
    kept = _add(one, auth, 0).json()["result"]["id"]
    one.kill()
    try:
        added = _add(other, auth, 2).json()["result"]["id"]
        assert _found(other, auth, PHOTOS[0]) == {kept} and _found(other, auth, PHOTOS[2]) == {added}
    finally:
        old, young = _orphan(replicas, "old.jpg", 2 * ORPHAN_GRACE_SECONDS), _orphan(replicas, "young.jpg", 0)
        one.start()
    assert _found(one, auth, PHOTOS[2]) == {added}, "the restarted replica serves what the other added meanwhile"
    assert not old.exists(), "the restarted replica swept an orphan older than the grace period"
    assert young.exists(), "a young file may be another replica's add in flight: it stays"
    young.unlink()
    _no_orphan_photos(replicas)


def _tree(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(grand for child in children for grand in _tree(int(child)))]


def _listening_here(pids: list[int]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address of every TCP socket listening in this process's network namespace that one
    of ``pids`` holds (read from /proc: nothing is connected to)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link.removeprefix("socket:[").removesuffix("]"))
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # TCP_LISTEN
                raw = bytes.fromhex(local.partition(":")[0])  # 32-bit words in host (little-endian) order
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
                found.append(ipaddress.ip_address(b"".join(words)))
    return found


def test_every_server_of_the_cluster_listens_on_loopback_only(replicas: Replicas, engines: Engines) -> None:
    """Milvus binds its ports on all interfaces whatever its config says: it must run where the
    only interface is a loopback of its own, reached through the relay's 127.0.0.1 ports."""
    assert engines.milvus.pid is not None and engines.postgres.pid is not None
    assert os.readlink(f"/proc/{engines.milvus.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    servers = {"milvus": engines.milvus.pid, "postgres": engines.postgres.pid}
    servers.update({f"replica {n}": server.pid for n, server in enumerate(replicas.servers)})
    for name, pid in servers.items():
        found = _listening_here(_tree(pid))
        assert found, f"{name} listens on nothing here: the check reads the wrong sockets"
        assert all(address.is_loopback for address in found), f"{name} listens on {found}"
