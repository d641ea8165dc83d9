"""The rules that group faces nobody named into persons, as a plain computation.

Input: the faces a run looks at (their image, whether they are good enough to seed a group,
the person each is in, the person a user kept each out of) and the links between them: pairs
of faces of different images whose cosine is at least the link threshold, found among each
face's nearest neighbours in the gallery's vector index (never all pairs).

The rules:

- Two faces of one image are never in one person.
- A face joins a group, and two groups join, only when the link between them is supported by
  several members on each side: ``support`` distinct faces of a side (all of them, for a side
  smaller than that) must have a link to the other side. One face that resembles two people
  links to both, but it is one face: it cannot chain them together. Two lone faces start a
  group only when some third face links to both (a pair of lookalikes, linked to nobody
  else in common, stays apart, and each can still join its own people).
- Links are taken strongest first, so a group grows from its most certain pairs outwards.
- Faces too small or too weakly detected to trust (``min_face_size``, ``min_det_score``)
  never seed a group: they join a group that formed without them, by the same support rule,
  or wait.
- A group becomes a person once it holds ``min_faces`` faces; smaller groups wait for more.
- Existing persons are groups from the start: faces join them (a face a user took out of a
  person never joins that person again), and a person no user edited may fold into another
  person, edited or not; a person a user edited is never folded into another, and two of
  them are never joined.

The output is a list of operations (new persons, faces joining persons, persons folding) that
the catalog applies as far as they still hold (``index.catalog.Grouping.commit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from index.records import Attach, Fold, GroupOp, NewGroup


@dataclass(frozen=True)
class GroupingSettings:
    """How faces are grouped into persons (``FACE_SEARCH_GROUP_*``)."""

    far: float | None = None  # the link threshold: the pack's cosine at this per-pair FAR (None: the pack's own)
    threshold: float | None = None  # a fixed link cosine instead
    support: int = 3  # distinct faces on each side of a link between groups (fewer in a smaller group)
    min_faces: int = 3  # faces of a new person
    min_face_size: float = 24.0  # pixels, the shorter side: smaller faces never seed a group
    min_det_score: float = 0.6  # faces detected less surely never seed a group
    neighbours: int = 32  # each face's nearest faces looked at (fewer split the largest identities)
    after: int = 1000  # faces added since the last run that start a run by themselves (0: never)
    commit_faces: int = 1000  # faces placed by one commit of a run (it holds the gallery's writes meanwhile)
    attach: bool = True  # an add puts each face in the person it clearly belongs to
    lease_seconds: float = 60.0  # a run's worker not heard of for this long is taken for dead


@dataclass
class FaceSet:
    """The faces a run looks at, in parallel arrays (index ``i`` is one face)."""

    ids: np.ndarray  # int64 face ids, ascending
    images: np.ndarray  # int64
    good: np.ndarray  # bool: may seed a group
    person: np.ndarray  # int64: the person it is in (0: none)
    kept_out: np.ndarray  # int64: the person a user took it out of (0: none)
    held: np.ndarray  # bool: a user deleted its person, and no run groups it again
    edited: dict[int, bool] = field(default_factory=dict)  # of every person in ``person``

    def index_of(self, face_ids: np.ndarray) -> np.ndarray:
        """Each face's index, -1 for faces not in the set."""
        position = np.searchsorted(self.ids, face_ids)
        position = np.minimum(position, max(len(self.ids) - 1, 0))
        found = (len(self.ids) > 0) & (self.ids[position] == face_ids)
        return np.where(found, position, -1)


@dataclass
class Links:
    """Pairs of faces (indices into a ``FaceSet``) of different images, with their cosine, and
    which way each was found: ``by_first``, the first face's search found the second."""

    first: np.ndarray
    second: np.ndarray
    cosine: np.ndarray
    by_first: np.ndarray
    by_second: np.ndarray

    @classmethod
    def between(
        cls, faces: FaceSet, queried: np.ndarray, neighbour_ids: np.ndarray, cosines: np.ndarray, threshold: float
    ) -> Links:
        """The links from a search: ``queried`` (face indices) against their neighbours (face
        ids, -1 padded, one row per query), at ``threshold`` or above."""
        rows = np.repeat(queried, neighbour_ids.shape[1])
        other = faces.index_of(neighbour_ids.ravel())
        keep = (other >= 0) & (cosines.ravel() >= threshold) & (other != rows)
        rows, other, cosine = rows[keep], other[keep], cosines.ravel()[keep]
        keep = faces.images[rows] != faces.images[other]
        found = np.ones(int(keep.sum()), bool)
        return cls(rows[keep], other[keep], cosine[keep].astype(np.float32), found, ~found)

    @classmethod
    def joined(cls, parts: list[Links]) -> Links:
        """All the parts, each pair once (its highest cosine, found either way), strongest first."""
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, bool))
        first = np.concatenate([p.first for p in parts])
        second = np.concatenate([p.second for p in parts])
        cosine = np.concatenate([p.cosine for p in parts])
        by_first = np.concatenate([p.by_first for p in parts])
        by_second = np.concatenate([p.by_second for p in parts])
        swapped = first > second
        low, high = np.where(swapped, second, first), np.where(swapped, first, second)
        by_low, by_high = np.where(swapped, by_second, by_first), np.where(swapped, by_first, by_second)
        order = np.lexsort((-cosine, high, low))
        low, high, cosine, by_low, by_high = (a[order] for a in (low, high, cosine, by_low, by_high))
        starts = np.ones(len(low), bool)
        starts[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
        at = np.nonzero(starts)[0]
        by_low = np.logical_or.reduceat(by_low, at) if len(at) else by_low
        by_high = np.logical_or.reduceat(by_high, at) if len(at) else by_high
        low, high, cosine = low[at], high[at], cosine[at]
        strongest = np.argsort(-cosine, kind="stable")
        return cls(low[strongest], high[strongest], cosine[strongest], by_low[strongest], by_high[strongest])


class _Groups:
    """Union-find over face indices with what the rules ask of a group: its size, its images,
    the persons in it (and whether a user edited one), the persons its faces are kept out of,
    and for each pair of groups linked but not joined yet, which of their faces the links touch.
    A million faces are mostly groups of one: what most groups lack is kept sparse."""

    def __init__(self, faces: FaceSet, links: Links, support: int) -> None:
        count = len(faces.ids)
        self.support = support
        self.near = _Adjacency(count, links)
        self.parent = list(range(count))
        self.size = [1] * count
        self.images: list[int | set[int]] = faces.images.tolist()  # an int: the one image of a group of one
        self.persons: dict[int, set[int]] = {}
        self.edited: set[int] = set()  # groups holding a person a user edited
        self.kept_out: dict[int, set[int]] = {}
        # per pair of groups: the faces of each side linked to the other, then those whose search found it
        self.pending: dict[tuple[int, int], tuple[set[int], set[int], set[int], set[int]]] = {}
        self.linked: dict[int, set[int]] = {}
        by_person: dict[int, int] = {}
        for index, person in enumerate(faces.person.tolist()):
            if person:
                self.persons[index] = {person}
                if faces.edited.get(person, True):
                    self.edited.add(index)
        for index in np.nonzero(faces.kept_out)[0].tolist():
            self.kept_out[index] = {int(faces.kept_out[index])}
        for index, person in enumerate(faces.person.tolist()):
            if person:
                self._union(by_person.setdefault(person, index), index)

    def find(self, index: int) -> int:
        parent = self.parent
        root = index
        while parent[root] != root:
            root = parent[root]
        while parent[index] != root:
            parent[index], index = root, parent[index]
        return root

    def image_set(self, root: int) -> set[int]:
        """The group's images: its own set, which a caller may change (not for a group of one)."""
        images = self.images[root]
        return images if isinstance(images, set) else {images}

    def add_image(self, root: int, image: int) -> None:
        images = self.image_set(root)
        images.add(image)
        self.images[root] = images

    def allowed(self, a: int, b: int) -> bool:
        """Whether the groups of roots ``a`` and ``b`` may ever be one person."""
        persons_a, persons_b = self.persons.get(a, _NONE), self.persons.get(b, _NONE)
        if persons_a and persons_b and a in self.edited and b in self.edited:
            return False
        if not persons_a.isdisjoint(self.kept_out.get(b, _NONE)) or not persons_b.isdisjoint(
            self.kept_out.get(a, _NONE)
        ):
            return False
        images_a, images_b = self.images[a], self.images[b]
        if not isinstance(images_a, set):
            return images_a not in self.image_set(b)
        if not isinstance(images_b, set):
            return images_b not in images_a
        small, large = sorted((images_a, images_b), key=len)
        return small.isdisjoint(large)

    def link(self, i: int, j: int, by_i: bool, by_j: bool) -> None:
        """Take the link between faces ``i`` and ``j`` (found by ``i``'s search, by ``j``'s, or
        both): join their groups if it, with the links before it, is supported on both sides.

        A side's support is its faces linked to the other group. Between two groups, only the
        faces whose own search found the other group count: a large group's faces find each
        other first, so a lookalike group (a sibling's photos) whose searches reach into it
        finds no support there. A lone face joining a group is the one that must have found it."""
        a, b = self.find(i), self.find(j)
        if a == b:
            return
        key, ends = ((a, b), ((i, by_i), (j, by_j))) if a < b else ((b, a), ((j, by_j), (i, by_i)))
        sides = self.pending.get(key)
        if sides is None:
            if not self.allowed(a, b):
                return
            sides = self.pending[key] = (set(), set(), set(), set())
            self.linked.setdefault(a, set()).add(b)
            self.linked.setdefault(b, set()).add(a)
        for side, (end, found) in enumerate(ends):
            if len(sides[side]) < self.support:
                sides[side].add(end)
            if found and len(sides[side + 2]) < self.support:
                sides[side + 2].add(end)
        if self._supported(key, sides):
            if self.size[a] == self.size[b] == 1 and self.near.apart(i, j):
                return  # two lone faces that nobody else links to both: a later link may still join them
            if self.allowed(*key):
                self._union(*key)
            else:
                del self.pending[key]

    def _supported(self, key: tuple[int, int], sides: tuple[set[int], set[int], set[int], set[int]]) -> bool:
        sizes = [self.size[root] for root in key]
        # a lone face found the group: the group's faces it found count
        lone = (sides[2], sides[1]) if sizes[0] == 1 else (sides[0], sides[3])
        counted = sides[2:] if min(sizes) > 1 else lone
        return all(len(side) >= min(self.support, size) for side, size in zip(counted, sizes, strict=True))

    def _union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        larger, smaller = sorted((self.image_set(a), self.image_set(b)), key=len, reverse=True)
        larger |= smaller
        self.images[a], self.images[b] = larger, -1
        for table in (self.persons, self.kept_out):
            gone = table.pop(b, None)
            if gone:
                table.setdefault(a, set()).update(gone)
        if b in self.edited:
            self.edited.add(a)
        self._move_pending(b, a)
        return a

    def _move_pending(self, gone: int, kept: int) -> None:
        """The pairs ``gone`` had pending are now ``kept``'s, their faces on each side combined."""
        linked_kept = self.linked.setdefault(kept, set())
        for other in self.linked.pop(gone, set()):
            sides = self.pending.pop((gone, other) if gone < other else (other, gone), None)
            linked_other = self.linked.setdefault(other, set())
            linked_other.discard(gone)
            if sides is None or other == kept:
                continue
            mine = (sides[0], sides[2]) if gone < other else (sides[1], sides[3])
            theirs = (sides[1], sides[3]) if gone < other else (sides[0], sides[2])
            key = (kept, other) if kept < other else (other, kept)
            current = self.pending.get(key)
            if current is None:
                current = self.pending[key] = (set(), set(), set(), set())
                linked_kept.add(other)
                linked_other.add(kept)
            at_kept, at_other = ((0, 2), (1, 3)) if kept < other else ((1, 3), (0, 2))
            for places, ends in ((at_kept, mine), (at_other, theirs)):
                for place, found in zip(places, ends, strict=True):
                    side = current[place]
                    for end in found:
                        if len(side) < self.support:
                            side.add(end)
        linked_kept.discard(gone)
        if not linked_kept:
            del self.linked[kept]


_NONE: frozenset[int] = frozenset()


class _Adjacency:
    """The faces each face links to, as one sorted array with each face's bounds in it."""

    def __init__(self, count: int, links: Links) -> None:
        ends = np.concatenate([links.first, links.second])
        others = np.concatenate([links.second, links.first])
        order = np.argsort(ends, kind="stable")
        self.others = others[order]
        self.bounds = np.searchsorted(ends[order], np.arange(count + 1))

    def apart(self, i: int, j: int) -> bool:
        """No face links to both."""
        mine = self.others[self.bounds[i] : self.bounds[i + 1]].tolist()
        return set(mine).isdisjoint(self.others[self.bounds[j] : self.bounds[j + 1]].tolist())


def plan(faces: FaceSet, links: Links, settings: GroupingSettings) -> list[GroupOp]:
    """The operations that group ``faces`` by ``links`` (strongest first) under the rules."""
    groups = _Groups(faces, links, settings.support)
    movable = ~faces.held & (faces.person == 0)
    seeds = (faces.good | (faces.person > 0)) & ~faces.held
    found = zip(
        links.first.tolist(), links.second.tolist(), links.by_first.tolist(), links.by_second.tolist(), strict=True
    )
    for i, j, by_i, by_j in found:
        if seeds[i] and seeds[j]:
            groups.link(i, j, by_i, by_j)
    roots = np.array([groups.find(i) for i in range(len(faces.ids))], np.int64)
    _join_weak(faces, links, groups, roots, movable & ~seeds, settings)
    return _operations(faces, groups, roots, movable, settings)


def _join_weak(
    faces: FaceSet, links: Links, groups: _Groups, roots: np.ndarray, weak: np.ndarray, settings: GroupingSettings
) -> None:
    """Faces that may not seed join the group (one that will be a person) the most of whose
    faces they link to, if those are enough (``support``, or all of a smaller group)."""
    if not weak.any():
        return
    ends: dict[int, dict[int, set[int]]] = {}
    for i, j in zip(links.first.tolist(), links.second.tolist(), strict=True):
        for face, other in ((i, j), (j, i)):
            if weak[face] and not weak[other]:
                ends.setdefault(face, {}).setdefault(int(roots[other]), set()).add(other)
    for face, by_root in ends.items():
        for root, members in sorted(by_root.items(), key=lambda item: -len(item[1])):
            persons = groups.persons.get(root, _NONE)
            if not (persons or groups.size[root] >= settings.min_faces):
                continue
            if len(members) < min(settings.support, groups.size[root]):
                break
            images = groups.image_set(root)
            if int(faces.images[face]) in images or int(faces.kept_out[face]) in persons:
                continue
            groups.add_image(root, int(faces.images[face]))
            groups.size[root] += 1
            roots[face] = root
            break


def _operations(
    faces: FaceSet, groups: _Groups, roots: np.ndarray, movable: np.ndarray, settings: GroupingSettings
) -> list[GroupOp]:
    members: dict[int, list[int]] = {}
    for index in np.nonzero(movable)[0].tolist():
        members.setdefault(int(roots[index]), []).append(int(faces.ids[index]))
    held, counts = np.unique(faces.person[faces.person > 0], return_counts=True)
    sizes = dict(zip(held.tolist(), counts.tolist(), strict=True))
    ops: list[GroupOp] = []
    for root in sorted(set(members) | set(groups.persons)):
        persons = groups.persons.get(root, _NONE)
        placed = members.get(root, [])
        if persons:
            # the person a user edited, if one is there (only one can be), takes the others in
            into = max(sorted(persons), key=lambda person: (faces.edited.get(person, True), sizes.get(person, 0)))
            if others := sorted(persons - {into}):
                ops.append(Fold(into, others))
            if placed:
                ops.append(Attach(into, placed))
        elif len(placed) >= settings.min_faces:
            ops.append(NewGroup(placed))
    return ops
