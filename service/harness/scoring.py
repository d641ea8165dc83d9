"""Accuracy metrics of face search, as plain computations on similarity scores.

Kept apart from the harness (``scripts/evaluate.py``) so that the tests and the
calibration use the same definitions: a threshold picked on nine folds is tested on
the tenth (the LFW protocol), a false-accept rate is a share of different-person pairs
at or above a cosine, and a gallery search is a false positive when any stranger among
its faces passes the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Cosine similarities are counted in bins this wide: fine enough that a threshold read
# from the counts is exact to four decimals, small enough to count billions of pairs.
BIN_WIDTH = 1e-4
_BINS = round(2 / BIN_WIDTH)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The cosine that classifies the most pairs right (same at or above it)."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_same = scores[order], same[order].astype(np.int64)
    # Cut before position i: pairs below are called different, pairs from i on same.
    diff_below = np.concatenate([[0], np.cumsum(1 - sorted_same)])
    same_from = np.concatenate([[0], np.cumsum(sorted_same[::-1])])[::-1]
    correct = diff_below + same_from
    cut = int(np.argmax(correct))
    if cut == 0:
        return float(sorted_scores[0]) - 1e-6
    if cut == len(sorted_scores):
        return float(sorted_scores[-1]) + 1e-6
    return float((sorted_scores[cut - 1] + sorted_scores[cut]) / 2)


@dataclass(frozen=True)
class FoldAccuracy:
    mean: float
    std: float
    thresholds: list[float]


def tenfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldAccuracy:
    """Accuracy with a threshold chosen on the other folds, mean and std over the folds."""
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test])
        predicted = scores[test] >= threshold
        accuracies.append(float(np.mean(predicted == same[test].astype(bool))))
        thresholds.append(threshold)
    return FoldAccuracy(float(np.mean(accuracies)), float(np.std(accuracies)), thresholds)


def assign_folds(count: int, folds: int = 10) -> np.ndarray:
    """Folds 1..10 in turn, for pair lists that do not name theirs."""
    return np.arange(count) % folds + 1


class ScoreCounts:
    """Counts of similarity scores in fine bins: quantiles of millions of pairs, in little memory."""

    def __init__(self) -> None:
        self.counts = np.zeros(_BINS + 1, dtype=np.int64)

    @staticmethod
    def bin_of(scores: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((np.asarray(scores, np.float64) + 1) / BIN_WIDTH), 0, _BINS).astype(np.int64)

    def add(self, scores: np.ndarray) -> None:
        self.counts += np.bincount(self.bin_of(scores.ravel()), minlength=_BINS + 1)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def share_at_or_above(self, threshold: float) -> float:
        """The share of scores at or above ``threshold`` (rounded down to its bin)."""
        return float(self.counts[int(self.bin_of(np.array([threshold]))[0]) :].sum() / max(self.total, 1))

    def threshold_at(self, share: float) -> float:
        """The lowest cosine (bin edge) with at most ``share`` of the scores at or above it."""
        above = np.cumsum(self.counts[::-1])[::-1]  # above[b]: scores in bin b or higher
        allowed = share * self.total
        candidates = np.nonzero(above <= allowed)[0]
        b = int(candidates[0]) if len(candidates) else _BINS
        return round(b * BIN_WIDTH - 1, 4)

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        """Counts between the given edges, for plots."""
        centres = np.arange(_BINS + 1) * BIN_WIDTH - 1 + BIN_WIDTH / 2
        return np.histogram(centres, bins=edges, weights=self.counts)[0]


def tar_at(same_scores: np.ndarray, threshold: float) -> float:
    """The share of same-person pairs at or above ``threshold``."""
    return float(np.mean(same_scores >= threshold)) if len(same_scores) else float("nan")


def recall_at(ranks: list[int | None], k: int) -> float:
    """The share of probes whose person was found within the first ``k`` answers (rank 1-based)."""
    return float(np.mean([rank is not None and rank <= k for rank in ranks])) if ranks else float("nan")


def stranger_rate(pair_rates: np.ndarray, gallery_faces: int) -> float:
    """The share of stranger queries with at least one match in a gallery of ``gallery_faces``.

    ``pair_rates`` holds, per query, the share of other people's faces that pass the
    threshold. Treating the gallery's faces as drawn from those people, a query returns
    a stranger with probability 1 - (1 - rate)^N; averaging per query keeps the faces
    that resemble many people (a few queries pass far more often than the mean rate).
    """
    rates = np.clip(np.asarray(pair_rates, np.float64), 0, 1)
    return float(np.mean(-np.expm1(gallery_faces * np.log1p(-np.minimum(rates, 1 - 1e-15)))))


# -- grouping faces into persons ------------------------------------------------------------


@dataclass(frozen=True)
class Grouped:
    """How well a grouping matches the labels, over the labelled faces (BCubed: each face's
    share of its group that is its person, and of its person that is in its group)."""

    precision: float
    recall: float
    f: float
    persons: int  # groups holding a labelled face
    mixed: int  # of those, groups whose labelled faces are of two identities or more
    grouped: float  # the share of labelled faces in some group (the others wait)


def bcubed(labels: np.ndarray, groups: np.ndarray) -> Grouped:
    """``labels``: each face's identity (None: not labelled, left out); ``groups``: each face's
    group (-1: in none, a group of its own)."""
    labelled = np.array([label is not None for label in labels], bool)
    names = np.unique(labels[labelled].astype(str), return_inverse=True)[1]
    grouped = groups[labelled]
    alone = grouped < 0
    grouped = np.where(alone, -1 - np.arange(len(grouped)), grouped)  # a face in no group is alone
    pairs = np.stack([grouped, names], axis=1)
    _, pair_index, pair_count = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    _, group_index, group_count = np.unique(grouped, return_inverse=True, return_counts=True)
    _, name_index, name_count = np.unique(names, return_inverse=True, return_counts=True)
    together = pair_count[pair_index.ravel()]
    precision = float(np.mean(together / group_count[group_index.ravel()]))
    recall = float(np.mean(together / name_count[name_index.ravel()]))
    mixed = sum(len(set(names[grouped == group].tolist())) > 1 for group in np.unique(grouped[~alone]))
    return Grouped(
        precision, recall, 2 * precision * recall / (precision + recall), len(np.unique(grouped[~alone])),
        int(mixed), float(np.mean(~alone)),
    )  # fmt: skip


def immich_groups(vectors: np.ndarray, max_distance: float = 0.5, min_faces: int = 3) -> np.ndarray:
    """Immich's default facial recognition, on the same embeddings: faces in order, each with
    its ``min_faces`` nearest faces (itself among them) within cosine distance ``max_distance``;
    a face with that many is a core face. A core face joins the person of one of those, or of
    the nearest face within the distance that has a person, or starts a new person; faces that
    are not core are taken again after all the others (deferred) and join a person the same
    way, or stay in none. Returns each face's person (-1: none)."""
    similar = 1 - max_distance
    near: list[np.ndarray] = []
    for start in range(0, len(vectors), 1024):
        scores = vectors[start : start + 1024] @ vectors.T
        for row in scores:
            found = np.nonzero(row >= similar)[0]
            near.append(found[np.argsort(-row[found], kind="stable")])
    person = np.full(len(vectors), -1, np.int64)
    made = 0
    deferred = []
    for face in range(len(vectors)):
        if len(near[face]) < min_faces:
            deferred.append(face)
            continue
        made = _immich_assign(face, near[face], person, min_faces, made, core=True)
    for face in deferred:
        if len(near[face]) > 1 or min_faces <= 1:
            made = _immich_assign(face, near[face], person, min_faces, made, core=False)
    return person


def _immich_assign(face: int, matches: np.ndarray, person: np.ndarray, min_faces: int, made: int, core: bool) -> int:
    first = matches[:min_faces]
    with_person = first[person[first] >= 0]
    if not len(with_person):
        with_person = matches[person[matches] >= 0][:1]  # the nearest face within the distance with a person
    if len(with_person):
        person[face] = person[with_person[0]]
    elif core:
        person[face] = made
        made += 1
    return made


# -- open-set identification of the models alone, over random enrolment splits ------------------

SPLITS = 20
OPEN_SET_FPIR = 0.01  # the share of strangers answered at which misses are compared


@dataclass(frozen=True)
class Split:
    """One random enrolment: half of the people with two photos or more, one photo each."""

    gallery: np.ndarray  # photo indices enrolled, one per enrolled person
    mates: np.ndarray  # the enrolled people's other photos
    strangers: np.ndarray  # every photo of the people not enrolled


def enrolment_splits(identities: list[str], splits: int = SPLITS, seed: int = 0) -> list[Split]:
    """The same splits for every pack on a set (they depend on the labels and the seed alone), so
    packs are compared split by split."""
    photos: dict[str, list[int]] = {}
    for index, identity in enumerate(identities):
        photos.setdefault(identity, []).append(index)
    repeat = sorted(identity for identity, indices in photos.items() if len(indices) > 1)
    made = []
    for number in range(splits):
        rng = np.random.default_rng([seed, number])
        enrolled = set(rng.choice(repeat, size=len(repeat) // 2, replace=False).tolist()) if repeat else set()
        gallery, mates, strangers = [], [], []
        for identity in sorted(photos):
            indices = photos[identity]
            if identity in enrolled:
                chosen = int(rng.integers(len(indices)))
                gallery.append(indices[chosen])
                mates += indices[:chosen] + indices[chosen + 1 :]
            else:
                strangers += indices
        made.append(Split(np.array(gallery, np.int64), np.array(mates, np.int64), np.array(strangers, np.int64)))
    return made


def open_set_miss(vectors: np.ndarray, found: np.ndarray, identities: list[str], split: Split,
                  fpir: float = OPEN_SET_FPIR) -> tuple[float, float]:  # fmt: skip
    """(miss, threshold): the share of the enrolled people's other photos not answered with
    them first, at the threshold that answers ``fpir`` of the strangers' photos."""
    missed, threshold = open_set_missed(vectors, found, identities, split, fpir)
    return float(missed.mean()) if len(missed) else float("nan"), threshold


def open_set_missed(vectors: np.ndarray, found: np.ndarray, identities: list[str], split: Split,
                    fpir: float = OPEN_SET_FPIR) -> tuple[np.ndarray, float]:  # fmt: skip
    """(missed, threshold): for each of the split's mates whether it was not answered with its
    person first, at the threshold that answers ``fpir`` of the strangers' photos.

    ``vectors`` holds one unit row per photo (its subject's face); ``found`` says which photos
    have one: a photo without a face is a missed mate and an unanswered stranger, and a
    person whose enrolled photo has none cannot be found.
    """
    labels = np.asarray(identities)
    gallery = split.gallery[found[split.gallery]]

    def best(probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full(len(probes), -np.inf, np.float32)
        names = np.full(len(probes), "", dtype=object)
        seen = probes[found[probes]]
        if len(seen) and len(gallery):
            sims = vectors[seen] @ vectors[gallery].T
            top = np.argmax(sims, axis=1)
            scores[found[probes]] = sims[np.arange(len(seen)), top]
            names[found[probes]] = labels[gallery][top]
        return scores, names

    stranger_scores, _ = best(split.strangers)
    ordered = np.sort(stranger_scores)[::-1]
    allowed = int(np.floor(fpir * len(ordered)))
    threshold = float(np.nextafter(ordered[allowed], np.float32(np.inf))) if allowed < len(ordered) else -1.0
    mate_scores, names = best(split.mates)
    return ~((mate_scores >= threshold) & (names == labels[split.mates])), threshold
