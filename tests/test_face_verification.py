"""The insightface 10-fold verification protocol (jobs/face_recognition/verification.py)."""
import math

import numpy as np
import pytest

from jobs.face_recognition import verification as V


def _reference(emb, issame, k=10, far_target=1e-3):
    """Brute-force loops, written independently of the module."""
    n = len(issame)
    rows = [[float(v) for v in row] for row in emb]
    unit = []
    for row in rows:
        norm = math.sqrt(sum(v * v for v in row))
        unit.append([v / norm for v in row])
    dist = [sum((a - b) ** 2 for a, b in zip(unit[2 * i], unit[2 * i + 1])) for i in range(n)]
    folds, start = [], 0
    for f in range(k):                      # sklearn KFold: first n % k folds one larger
        size = n // k + (1 if f < n % k else 0)
        folds.append(list(range(start, start + size)))
        start += size
    acc_grid = [i * 0.01 for i in range(400)]
    val_grid = [i * 0.001 for i in range(4000)]
    accs, thrs, vals, fars = [], [], [], []
    for test in folds:
        train = [i for i in range(n) if i not in test]
        best_thr, best_acc = None, -1
        for t in acc_grid:
            acc = sum((dist[i] < t) == issame[i] for i in train) / len(train)
            if acc > best_acc:
                best_thr, best_acc = t, acc
        thrs.append(best_thr)
        accs.append(sum((dist[i] < best_thr) == issame[i] for i in test) / len(test))
        diffs = [i for i in train if not issame[i]]
        curve = [sum(dist[i] < t for i in diffs) / len(diffs) for t in val_grid]
        if max(curve) < far_target:
            thr = 0.0
        else:  # walk the curve to the segment where it crosses the target
            thr = val_grid[-1]
            for j in range(len(val_grid) - 1):
                if curve[j] <= far_target < curve[j + 1]:
                    frac = (far_target - curve[j]) / (curve[j + 1] - curve[j])
                    thr = val_grid[j] + frac * (val_grid[j + 1] - val_grid[j])
                    break
        same_t = [i for i in test if issame[i]]
        diff_t = [i for i in test if not issame[i]]
        vals.append(sum(dist[i] < thr for i in same_t) / len(same_t))
        fars.append(sum(dist[i] < thr for i in diff_t) / len(diff_t))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    std = lambda xs: math.sqrt(mean([(x - mean(xs)) ** 2 for x in xs]))  # noqa: E731
    return {"accuracy": mean(accs), "accuracy_std": std(accs), "threshold": mean(thrs),
            "val": mean(vals), "val_std": std(vals), "far": mean(fars), "fold_accuracy": accs}


def _noisy_pairs(n, dim, seed, noise=1.0):
    """Pairs 2i, 2i+1: same pairs share a base vector plus noise; balanced in every fold."""
    rng = np.random.default_rng(seed)
    issame = np.array([i % 2 == 0 for i in range(n)])
    emb = rng.normal(size=(2 * n, dim))
    emb[1::2][issame] = emb[0::2][issame] + noise * rng.normal(size=(issame.sum(), dim))
    return emb, issame


@pytest.mark.parametrize("n, far_target", [(60, 1e-3), (73, 0.1)])
def test_matches_brute_force_reference(n, far_target):
    emb, issame = _noisy_pairs(n, 16, seed=n)
    emb *= 3.0  # unnormalised on purpose: the protocol normalises
    got = V.evaluate(emb, issame, far_target=far_target)
    ref = _reference(emb, issame.tolist(), far_target=far_target)
    assert 0.6 < got["accuracy"] < 0.97   # an informative case, neither trivial nor chance
    for key in ("accuracy", "accuracy_std", "threshold", "val", "val_std", "far"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key
    assert got["fold_accuracy"] == pytest.approx(ref["fold_accuracy"])
    assert got["num_pairs"] == n
    assert got["xnorm"] == pytest.approx(np.linalg.norm(emb, axis=1).mean())


def test_perfect_embeddings_score_one():
    n = 40                                        # folds of 4: same, diff, same, diff
    issame = np.array([i % 2 == 0 for i in range(n)])
    angles = np.zeros(2 * n)                      # pairs on the unit circle: dist = 2 - 2cos
    diff_dist = np.where(np.arange(n) % 4 == 1, 1.5004, 2.5004)[~issame]
    angles[1::2][~issame] = np.arccos(1 - diff_dist / 2)
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 5
    r = V.evaluate(emb, issame)
    assert r["accuracy"] == 1.0 and r["accuracy_std"] == 0.0
    assert 0 < r["threshold"] <= 1.5
    # The FAR=1e-3 threshold lies just below the smallest different-pair distance.
    assert r["val"] == 1.0 and r["far"] == 0.0 and r["val_std"] == 0.0


def test_random_embeddings_score_chance():
    rng = np.random.default_rng(1)
    r = V.evaluate(rng.normal(size=(2000, 128)), rng.random(1000) < 0.5)
    assert 0.44 < r["accuracy"] < 0.56
    assert r["val"] < 0.05


def test_folds_are_contiguous_and_unshuffled():
    assert V.fold_slices(23, 10) == [(0, 3), (3, 6), (6, 9), (9, 11), (11, 13), (13, 15),
                                     (15, 17), (17, 19), (19, 21), (21, 23)]
    # 30 pairs, folds of 3; the same pairs 6 and 8 (third fold) point in opposite directions.
    emb, issame = _noisy_pairs(30, 8, seed=3, noise=0.0)
    emb[[13, 17]] = -emb[[12, 16]]
    r = V.evaluate(emb, issame)
    assert r["fold_accuracy"][2] == pytest.approx(1 / 3)  # only pair 7 (different) right
    assert all(acc == 1.0 for f, acc in enumerate(r["fold_accuracy"]) if f != 2)


def test_val_at_far_edge_cases():
    n = 20
    issame = np.array([i % 2 == 0 for i in range(n)])
    emb = np.tile([1.0, 0.0], (2 * n, 1))
    emb[1::2][~issame] = [-1.0, 0.0]                     # different pairs antipodal: dist 4
    r = V.evaluate(emb, issame)                          # FAR never reaches 1e-3: threshold 0
    assert r["accuracy"] == 1.0 and r["val"] == 0.0 and r["far"] == 0.0
    emb, issame = _noisy_pairs(200, 16, seed=5)
    loose, strict = V.evaluate(emb, issame, far_target=0.3), V.evaluate(emb, issame)
    assert loose["val"] > strict["val"] and loose["far"] > strict["far"]
    assert loose["far"] == pytest.approx(0.3, abs=0.1)


def test_verify_flip_sums_and_batches_with_the_tail_window():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2 * 25, 6, 5, 3), dtype=np.uint8)
    issame = rng.random(25) < 0.5
    sizes = []

    def embed(batch):
        assert batch.dtype == np.uint8 and batch.flags.c_contiguous
        sizes.append(len(batch))
        return batch.reshape(len(batch), -1).astype(np.float64)

    r = V.verify(embed, images, issame, batch_size=16)
    assert sizes == [16] * 8                             # 50 images: 4 batches x 2 passes
    flat = images.reshape(50, -1).astype(np.float64)
    flipped = images[:, :, ::-1, :].reshape(50, -1).astype(np.float64)
    expected = V.evaluate(flat + flipped, issame)
    assert r["accuracy"] == expected["accuracy"] and r["threshold"] == expected["threshold"]
    assert r["xnorm"] == pytest.approx(np.linalg.norm(np.concatenate([flat, flipped]),
                                                      axis=1).mean())


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[2N, D\]"):
        V.evaluate(np.zeros((5, 4)), [True, False])
    with pytest.raises(ValueError, match="nrof_folds"):
        V.evaluate(np.ones((8, 4)), [True, False, True, False])
    with pytest.raises(ValueError, match="embed_fn must return"):
        V.verify(lambda b: np.zeros((1, 3)), np.zeros((4, 2, 2, 3), np.uint8), [1, 0])
