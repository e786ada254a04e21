"""Triplet loss with MassFace's online mining strategies (yule-li/MassFace train_triplet.py).

A batch holds P identities x K images, the images of one identity next to each other
(face_iter.FaceBatches, mode "pk").  On L2-normalised embeddings, d = squared Euclidean distance.
Within each identity run of images i_0..i_{k-1}, anchors are i_0..i_{k-2} and the
positives of anchor i_j are the later images i_{j+1}..i_{k-1}.  For a pair (a, p) the
candidate negatives are images of other identities with d(a, n) - d(a, p) < alpha.

* ``batch_all``: every (a, p, n) with n a candidate; shuffled and clipped to
  ``max_triplets`` (MassFace: 10 x batch size).
* ``batch_random``: per (a, p), one random candidate.
* ``batch_min_min``: per anchor, among its pairs that have candidates, the nearest
  positive, with the nearest candidate negative (one triplet per anchor at most).
* ``batch_min_max``: the same with the farthest such positive.
* ``batch_hardest``: per anchor, its farthest later positive and its nearest negative
  overall (no alpha filter): exactly one triplet per anchor.

Min-min / min-max: MassFace's code keeps, across an anchor's pairs, the triplet whose
nearest candidate is nearest (resp. farthest).  But the anchor's nearest negative is a
candidate of every pair that has any candidate, so that comparison is always a tie and
both strategies pick the first qualifying positive.  Here the choice across pairs is
made on the positive distance instead -- the reading the names suggest (min negative with
min / max positive) -- so the two strategies differ, and min-max is batch_hardest limited
to pairs that pass the alpha rule.

Ties keep the first index.  ``select`` returns an int64 array T x 3 of batch row indices
(T may be 0: nothing to learn from this batch).  The loss is
mean(max(0, d(a, p) - d(a, n) + alpha)) over the selected triplets.
"""
import numpy as np

STRATEGIES = ("batch_all", "batch_random", "batch_min_min", "batch_min_max", "batch_hardest")
ALIASES = {"all": "batch_all", "random": "batch_random", "min_and_min": "batch_min_min",
           "min_min": "batch_min_min", "min_and_max": "batch_min_max", "min_max": "batch_min_max",
           "hardest": "batch_hardest"}


def strategy_name(name):
    """Canonical strategy name (MassFace's spellings accepted) or ValueError."""
    name = ALIASES.get(name, name)
    if name not in STRATEGIES:
        raise ValueError(f"unknown mining strategy {name!r}: use one of {', '.join(STRATEGIES)}")
    return name


def pairwise_sq_distances(emb):
    """Squared L2 distances between the rows of `emb` after L2 normalisation."""
    emb = np.asarray(emb, np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sq = np.sum(emb * emb, axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * emb @ emb.T, 0.0)


def identity_runs(labels):
    """[(start, end)] of consecutive equal labels."""
    labels = np.asarray(labels)
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(labels)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def select(dist, labels, strategy, alpha, rng=None, max_triplets=None):
    """Triplets (T x 3 int64: anchor, positive, negative) mined from distance matrix `dist`."""
    strategy = strategy_name(strategy)
    rng = rng if rng is not None else np.random.default_rng()
    labels = np.asarray(labels)
    triplets = []
    for start, end in identity_runs(labels):
        for a in range(start, end - 1):
            negatives = np.flatnonzero(labels != labels[a])
            if negatives.size == 0:
                continue
            nearest = negatives[np.argmin(dist[a, negatives])]
            if strategy == "batch_hardest":
                p = max(range(a + 1, end), key=lambda q: (dist[a, q], -q))
                triplets.append((a, p, nearest))
                continue
            pairs = [(p, negatives[dist[a, negatives] - dist[a, p] < alpha])
                     for p in range(a + 1, end)]
            pairs = [(p, cands) for p, cands in pairs if cands.size]
            if strategy == "batch_all":
                triplets.extend((a, p, n) for p, cands in pairs for n in cands)
            elif strategy == "batch_random":
                triplets.extend((a, p, cands[rng.integers(cands.size)]) for p, cands in pairs)
            elif pairs:  # min_min / min_max: the nearest candidate is `nearest` for every pair
                pick = min if strategy == "batch_min_min" else max
                sign = 1 if strategy == "batch_min_min" else -1
                p = pick((p for p, _ in pairs), key=lambda q: (dist[a, q], sign * q))
                triplets.append((a, p, nearest))
    out = np.array(triplets, dtype=np.int64).reshape(-1, 3)
    out = out[rng.permutation(len(out))]
    if strategy == "batch_all" and max_triplets is not None:
        out = out[:max_triplets]
    return out


def triplet_loss(nd, emb, triplets, alpha):
    """Mean hinge loss of the selected triplets on L2-normalised `emb` (recorded by autograd)."""
    emb = nd.L2Normalization(emb, mode="instance")
    idx = nd.array(triplets, ctx=emb.context, dtype="int64")
    a, p, n = (nd.take(emb, idx[:, i]) for i in range(3))
    d_ap = nd.sum(nd.square(a - p), axis=1)
    d_an = nd.sum(nd.square(a - n), axis=1)
    return nd.mean(nd.relu(d_ap - d_an + alpha))
