"""The grouping rules on small, hand-made link graphs: each rule is one test, and each would
fail under the rule a plain clustering uses (single linkage, every face a seed, no image or
user constraint)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from index.records import Attach, Fold, NewGroup
from models.packs import load_pack
from service.core.grouping import FaceSet, GroupingSettings, Links, plan
from service.core.threshold import cosine_at_far, link_threshold

RULES = GroupingSettings(support=3, min_faces=3)


def face_set(images: list[int], person: list[int] | None = None, good: list[bool] | None = None, **extra) -> FaceSet:
    count = len(images)
    return FaceSet(
        ids=np.arange(1, count + 1, dtype=np.int64),
        images=np.array(images, np.int64),
        good=np.array(good if good is not None else [True] * count),
        person=np.array(person or [0] * count, np.int64),
        kept_out=np.array(extra.get("kept_out", [0] * count), np.int64),
        held=np.array(extra.get("held", [False] * count)),
        edited=extra.get("edited", {}),
    )


def links(pairs: list[tuple[int, int, float]]) -> Links:
    """Links between faces given by id (1-based), as the index would find them."""
    first, second, cosine = zip(*pairs, strict=True) if pairs else ((), (), ())
    found = np.ones(len(first), bool)
    return Links.joined([Links(np.array(first) - 1, np.array(second) - 1, np.array(cosine, np.float32), found, found)])


def clique(ids: list[int], cosine: float = 0.6) -> list[tuple[int, int, float]]:
    return [(a, b, cosine) for n, a in enumerate(ids) for b in ids[n + 1 :]]


def groups(ops: list) -> list[list[int]]:
    return sorted(sorted(op.faces) for op in ops if isinstance(op, NewGroup))


def test_two_people_and_one_face_that_resembles_both_stay_two_people() -> None:
    faces = face_set(list(range(1, 10)))
    bridge = [(9, 1, 0.7), (9, 2, 0.7), (9, 3, 0.7), (9, 5, 0.7), (9, 6, 0.7), (9, 7, 0.7)]
    found = groups(plan(faces, links(clique([1, 2, 3, 4]) + clique([5, 6, 7, 8]) + bridge), RULES))
    assert [1, 2, 3, 4] in found or [1, 2, 3, 4, 9] in found
    assert not any({1, 5} <= set(group) for group in found), found
    lookalike = groups(plan(faces, links(clique([1, 2, 3, 4]) + clique([5, 6, 7, 8]) + [(4, 5, 0.9)]), RULES))
    assert lookalike == [[1, 2, 3, 4], [5, 6, 7, 8]], "one strong pair across does not join two people"


def test_two_faces_of_one_photo_are_never_one_person() -> None:
    faces = face_set([1, 2, 3, 3, 4])  # faces 3 and 4 are of one photo
    found = groups(plan(faces, links(clique([1, 2, 3, 4, 5])), RULES))
    assert found and all(not {3, 4} <= set(group) for group in found), found


def test_a_face_joins_a_group_only_with_several_of_its_members() -> None:
    faces = face_set(list(range(1, 7)))
    found = groups(
        plan(faces, links([*clique([1, 2, 3, 4]), (5, 1, 0.8), (6, 1, 0.8), (6, 2, 0.8), (6, 3, 0.8)]), RULES)
    )
    assert found == [[1, 2, 3, 4, 6]], "5 is close to one member only"


def test_small_or_weak_faces_never_seed_but_may_join() -> None:
    faces = face_set(list(range(1, 8)), good=[False, False, False, True, True, True, False])
    weak_only = clique([1, 2, 3], 0.9)
    found = groups(plan(faces, links(weak_only + clique([4, 5, 6]) + [(7, 4, 0.5), (7, 5, 0.5), (7, 6, 0.5)]), RULES))
    assert found == [[4, 5, 6, 7]], "weak faces 1-3 wait; weak face 7 joins a group that formed without it"


def test_groups_smaller_than_min_faces_wait() -> None:
    faces = face_set(list(range(1, 6)))
    assert groups(plan(faces, links(clique([1, 2]) + clique([3, 4, 5])), RULES)) == [[3, 4, 5]]


def test_faces_join_persons_but_not_the_one_a_user_kept_them_out_of() -> None:
    faces = face_set(
        list(range(1, 9)),
        person=[7, 7, 7, 0, 0, 8, 8, 0],
        kept_out=[0, 0, 0, 0, 7, 0, 0, 0],
        edited={7: True, 8: False},
    )
    near = [(f, p, 0.6) for f in (4, 5) for p in (1, 2, 3)] + [(8, 6, 0.6), (8, 7, 0.6)]
    ops = plan(faces, links(clique([1, 2, 3]) + clique([6, 7]) + near), RULES)
    assert Attach(7, [4]) in ops and Attach(8, [8]) in ops
    assert not any(isinstance(op, Attach) and 5 in op.faces for op in ops), "5 was taken out of person 7"


def test_persons_no_user_edited_fold_into_others_and_two_edited_ones_never_join() -> None:
    faces = face_set(list(range(1, 10)), person=[1, 1, 1, 2, 2, 2, 3, 3, 3], edited={1: False, 2: False, 3: True})
    across = [(a, b, 0.6) for a in (1, 2, 3) for b in (4, 5, 6)] + [(a, b, 0.6) for a in (4, 5, 6) for b in (7, 8, 9)]
    ops = plan(faces, links(clique([1, 2, 3]) + clique([4, 5, 6]) + clique([7, 8, 9]) + across), RULES)
    assert [op for op in ops if isinstance(op, Fold)] == [Fold(3, [1, 2])], "into the person a user edited"
    both = face_set(list(range(1, 7)), person=[1, 1, 1, 3, 3, 3], edited={1: True, 3: True})
    across = [(a, b, 0.6) for a in (1, 2, 3) for b in (4, 5, 6)]
    assert not plan(both, links(clique([1, 2, 3]) + clique([4, 5, 6]) + across), RULES)


def test_held_faces_are_never_grouped() -> None:
    faces = face_set(list(range(1, 5)), held=[True, False, False, False])
    assert groups(plan(faces, links(clique([1, 2, 3, 4])), RULES)) == [[2, 3, 4]]


def test_the_link_threshold_is_each_packs_cosine_at_its_own_far_unless_a_setting_says_otherwise() -> None:
    """The link FAR is a fact of the pack (pack.json ``grouping.far``), read in its calibration;
    ``FACE_SEARCH_GROUP_FAR`` and ``FACE_SEARCH_GROUP_THRESHOLD`` override it."""
    pack = load_pack("buffalo_s")
    table = pack.manifest["calibration"]["far_cosine"]
    stricter = replace(pack, manifest={**pack.manifest, "grouping": {"far": 1e-6}})
    assert link_threshold(stricter, None, None) == dict((f, c) for f, c in table)[1e-6]
    assert link_threshold(stricter, 1e-4, None) == dict((f, c) for f, c in table)[1e-4]
    assert link_threshold(stricter, None, 0.5) == 0.5
    for name in ("buffalo_s", "buffalo_s_edgeface"):
        own = load_pack(name)
        far = own.manifest["grouping"]["far"]
        assert link_threshold(own, None, None) == round(
            cosine_at_far(own.manifest["calibration"]["far_cosine"], far), 4
        )
    assert link_threshold(replace(pack, manifest={}), None, None) == pack.search_threshold
