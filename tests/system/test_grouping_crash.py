"""A grouping run killed with SIGKILL while a user edits persons: no acknowledged edit is lost
or undone, no face is ever in two persons, and the next run takes the job over and finishes it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.records import DONE, RUNNING, NewFace, NewImage
from service.core.config import Settings
from service.core.errors import Conflict, PersonNotFound
from service.core.jobs import GROUP_FACES
from service.core.requests import FacesMove, NewPerson, PersonChange
from service.core.services import build_services
from service.harness.synthetic import faces
from tests.contract.test_persons import consistent
from tests.live import ROOT

PER_PHOTO = 10
LEASE = 3.0
COMMIT_FACES = 50


def fill(catalog, gid: int, identities: int) -> list[int]:
    """Photos of ten faces each, every face of another person; the face ids, identity by identity."""
    data = faces(identities, per_identity=5, group=20, seed=21)
    order = np.random.default_rng(4).permutation(len(data.vectors))
    face_of = np.zeros(len(order), np.int64)
    for photo in order.reshape(-1, PER_PHOTO):
        new = [NewFace([0.0, 0.0, 80.0, 80.0], 0.9, data.vectors[i]) for i in photo]
        record = catalog.images.add(gid, NewImage("x.jpg", "image/jpeg", {}, "now", "buffalo_s", new))
        face_of[photo] = [face.id for face in record.faces]
    return face_of.tolist()


@pytest.mark.slow
def test_a_run_killed_mid_commit_loses_no_edit_and_leaves_no_face_in_two_persons(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ, "FACE_SEARCH_DATA_DIR": str(data), "FACE_SEARCH_JOB_LEASE_SECONDS": str(LEASE),
        # small commits: the run commits long enough for this loop to catch it committing on a busy machine
        "FACE_SEARCH_GROUP_COMMIT_FACES": str(COMMIT_FACES),
    }  # fmt: skip
    settings = Settings.from_env(env).at(data)
    settings = replace(settings, grouping=replace(settings.grouping, lease_seconds=LEASE))
    with build_services(settings) as services:
        key = services.keys.create("k", "s").record
        ids = fill(services.catalog, key.gallery, 3000)
    run = subprocess.Popen(
        [sys.executable, "scripts/persons.py", "group", "--key", "k", "--full"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    expected: dict[int, int] = {}  # face -> the person the last acknowledged edit put it in
    names: dict[int, str] = {}
    rng = random.Random(5)
    with build_services(settings) as services:
        persons, gid = services.persons, key.gallery
        killed_at = None
        job = None
        while run.poll() is None:
            job = services.catalog.job_records.submit(gid, GROUP_FACES, {}, "now")  # the one under way
            if job.state == RUNNING and len(ids) < job.done < job.total:
                os.kill(run.pid, signal.SIGKILL)  # committing: some batches are in, others not
                killed_at = (job.done, job.total)
                break
            chosen = rng.sample(ids, 3)
            try:
                if rng.random() < 0.5:
                    made = persons.create(key, NewPerson(f"p{len(names)}", {}, chosen[:1]))
                    names[made.id] = made.name
                    expected[chosen[0]] = made.id
                elif names:
                    target = rng.choice(sorted(names))
                    persons.move(key, FacesMove(target, chosen[1:2]))
                    expected[chosen[1]] = target
                    persons.update(key, PersonChange(target, f"renamed {target}"))
                    names[target] = f"renamed {target}"
            except (Conflict, PersonNotFound):
                pass  # two faces of one photo, or a person emptied meanwhile: refused, nothing changed
            time.sleep(0.05)
        run.wait()
        assert killed_at is not None, "the run was killed while it committed"
        assert services.catalog.job_records.get(job.id).state == RUNNING, "its worker is gone"
        assert services.catalog.grouping.state(gid).placed > 0, "some of the run's commits are in"

        def edits_hold() -> None:
            now = services.catalog.persons.of_faces(gid, list(expected))
            assert {face: (now[face].person, now[face].by_user) for face in expected} == {
                face: (person, True) for face, person in expected.items()
            }
            for person_id, name in names.items():
                found = services.catalog.persons.get(gid, person_id)
                if found is not None:
                    assert found.name == name and found.edited
            consistent(services.catalog, gid)

        edits_hold()
        time.sleep(LEASE + 0.5)  # the killed worker's lease runs out
        again = subprocess.run(
            [sys.executable, "scripts/persons.py", "group", "--key", "k"], cwd=ROOT, env=env, capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        ended = json.loads(again.stdout.strip().splitlines()[-1])
        assert (ended["id"], ended["state"]) == (job.id, DONE), "the job was taken over and finished"
        edits_hold()
        assert services.catalog.grouping.state(gid).placed > 0.8 * len(ids), "the run grouped what it had left"
