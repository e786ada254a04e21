"""MassFace triplet mining (jobs/face_recognition/triplet.py) on a hand-checked batch.

Embeddings are points on a line, d = squared difference, alpha = 0.5:

    identity A: x0=0.0, x1=0.5, x2=1.0     identity B: x3=1.2, x4=3.0
    identity C: x5=0.3 (one image: negative only)   identity D: x6=10.0, x7=10.1

Pairs and their candidates (d(a,n) < d(a,p) + 0.5), worked out by hand:
(0,1) d=.25 -> {5};  (0,2) d=1.0 -> {3, 5};  (1,2) d=.25 -> {3, 5};
(3,4) d=3.24 -> {0, 1, 2, 5};  (6,7) d=.01 -> none (nearest negative x4 at d=49).
Nearest negatives: of 0 -> 5, of 1 -> 5, of 3 -> 2, of 6 -> 4.
"""

import numpy as np
import pytest

from jobmodules import job_modules

triplet = job_modules("face_recognition", "triplet")

X = np.array([0.0, 0.5, 1.0, 1.2, 3.0, 0.3, 10.0, 10.1])
LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3])
DIST = (X[:, None] - X[None, :]) ** 2
ALPHA = 0.5


def mined(strategy, seed=0, **kwargs):
    out = triplet.select(DIST, LABELS, strategy, ALPHA, np.random.default_rng(seed), **kwargs)
    assert out.dtype == np.int64 and out.shape[1] == 3
    return sorted(map(tuple, out.tolist()))


def test_batch_all_takes_every_candidate():
    assert mined("batch_all") == [(0, 1, 5), (0, 2, 3), (0, 2, 5), (1, 2, 3), (1, 2, 5),
                                  (3, 4, 0), (3, 4, 1), (3, 4, 2), (3, 4, 5)]


def test_batch_all_is_shuffled_then_clipped():
    everything = set(mined("batch_all"))
    clipped = [mined("batch_all", seed, max_triplets=4) for seed in range(6)]
    assert all(len(c) == 4 and set(c) <= everything for c in clipped)
    assert len({tuple(c) for c in clipped}) > 1  # a random subset, not always the first four


def test_batch_random_one_candidate_per_pair():
    seen = {}
    for seed in range(30):
        got = mined("batch_random", seed)
        assert [t[:2] for t in got] == [(0, 1), (0, 2), (1, 2), (3, 4)]
        for a, p, n in got:
            seen.setdefault((a, p), set()).add(n)
    assert seen == {(0, 1): {5}, (0, 2): {3, 5}, (1, 2): {3, 5}, (3, 4): {0, 1, 2, 5}}


def test_batch_min_min_nearest_positive_nearest_negative():
    assert mined("batch_min_min") == [(0, 1, 5), (1, 2, 5), (3, 4, 2)]


def test_batch_min_max_farthest_qualifying_positive():
    assert mined("batch_min_max") == [(0, 2, 5), (1, 2, 5), (3, 4, 2)]


def test_batch_hardest_has_one_triplet_per_anchor_without_alpha_filter():
    assert mined("batch_hardest") == [(0, 2, 5), (1, 2, 5), (3, 4, 2), (6, 7, 4)]


def test_massface_names_and_unknown_strategy():
    assert mined("min_and_max") == mined("batch_min_max")
    assert mined("hardest") == mined("batch_hardest")
    with pytest.raises(ValueError, match="batch_all, batch_random"):
        triplet.strategy_name("semi_hard")


def test_no_candidates_gives_an_empty_array():
    far = np.array([0.0, 0.01, 5.0, 5.01])
    out = triplet.select((far[:, None] - far[None, :]) ** 2, [0, 0, 1, 1], "batch_all", 0.5)
    assert out.shape == (0, 3)


def test_pairwise_distances_of_normalised_embeddings():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4)) * rng.uniform(0.5, 3, size=(6, 1))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    want = ((unit[:, None] - unit[None]) ** 2).sum(-1)
    np.testing.assert_allclose(triplet.pairwise_sq_distances(emb), want, atol=1e-12)


def test_triplet_loss_matches_numpy_and_only_moves_selected_rows():
    mx = pytest.importorskip("mxnet")
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(6, 3))
    found = np.array([[0, 1, 3], [2, 1, 4]])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    d_ap = ((unit[found[:, 0]] - unit[found[:, 1]]) ** 2).sum(1)
    d_an = ((unit[found[:, 0]] - unit[found[:, 2]]) ** 2).sum(1)
    want = np.maximum(d_ap - d_an + 0.3, 0).mean()
    x = mx.nd.array(emb)
    x.attach_grad()
    with mx.autograd.record():
        loss = triplet.triplet_loss(mx.nd, x, found, 0.3)
    loss.backward()
    assert abs(loss.asscalar() - want) < 1e-5
    assert np.abs(x.grad.asnumpy()[5]).max() == 0  # row 5 is in no triplet
