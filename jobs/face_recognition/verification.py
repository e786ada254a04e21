"""Face verification on pair files: the insightface 10-fold protocol in plain numpy.

Contract (matches insightface ``verification.py``, MXNet era):

* ``embeddings`` is ``[2N, D]``: pair ``i`` is rows ``2i`` and ``2i+1``; ``issame`` has N
  booleans.  Rows are L2-normalised here, the distance is the squared L2 distance
  (``0..4``), a pair is predicted "same" when ``dist < threshold``.
* Folds are ``nrof_folds`` contiguous, unshuffled slices of the pair list (sklearn
  ``KFold(shuffle=False)``: the first ``N % k`` folds hold one pair more), so the fold
  structure of a pairs file (LFW: 10 sets of 600) is kept.
* Accuracy: for each fold the threshold in ``np.arange(0, 4, 0.01)`` with the best accuracy
  on the other folds (first one on ties) is applied to the held-out fold; the result is the
  mean and (population) std over folds.
* VAL@FAR: on the other folds the FAR curve over ``np.arange(0, 4, 0.001)`` is inverted at
  ``far_target`` by linear interpolation between the two grid thresholds that bracket it
  (insightface uses ``interp1d(far, thresholds)``; if the target is never reached the
  threshold is 0); VAL and FAR are then measured on the held-out fold.
* XNorm: mean L2 norm of the raw (unnormalised, not flip-summed) embeddings.

Pure numpy; no mxnet, scipy or sklearn.  Functions raise ValueError on inconsistent shapes.
"""
import numpy as np

ACC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


def l2_normalize(x):
    """Rows divided by their L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def xnorm(embeddings):
    """Mean L2 norm of the rows of unnormalised embeddings (insightface's XNorm)."""
    e = np.asarray(embeddings, dtype=np.float64)
    return float(np.linalg.norm(e.reshape(len(e), -1), axis=1).mean()) if len(e) else 0.0


def flip_sum(emb, emb_flipped):
    """Embedding of each image plus that of its mirror image ("Accuracy-Flip")."""
    emb, emb_flipped = np.asarray(emb), np.asarray(emb_flipped)
    if emb.shape != emb_flipped.shape:
        raise ValueError(f"flip_sum: shapes differ {emb.shape} vs {emb_flipped.shape}")
    return emb + emb_flipped


def fold_slices(n, nrof_folds):
    """Contiguous (start, stop) of each fold, sizes as sklearn KFold(shuffle=False)."""
    if not 2 <= nrof_folds <= n:
        raise ValueError(f"need 2 <= nrof_folds <= number of pairs, got {nrof_folds} folds "
                         f"for {n} pairs")
    sizes = np.full(nrof_folds, n // nrof_folds)
    sizes[:n % nrof_folds] += 1
    stops = np.cumsum(sizes)
    return [(int(stop - size), int(stop)) for size, stop in zip(sizes, stops)]


def _accuracy_curve(dist, same, thresholds):
    """Accuracy of ``dist < t`` against ``same`` for every threshold t: [T]."""
    pred = dist[None, :] < thresholds[:, None]
    return (pred == same[None, :]).mean(axis=1)


def _val_far(threshold, dist, same):
    pred = dist < threshold
    n_same, n_diff = same.sum(), (~same).sum()
    val = (pred & same).sum() / n_same if n_same else 0.0
    far = (pred & ~same).sum() / n_diff if n_diff else 0.0
    return float(val), float(far)


def _threshold_for_far(dist, same, far_target):
    """Grid threshold where the FAR of ``dist < t`` reaches far_target (interpolated)."""
    diff = np.sort(dist[~same])
    if not len(diff):
        return 0.0
    # FAR at each grid threshold; non-decreasing in the threshold.
    far = np.searchsorted(diff, VAL_THRESHOLDS, side="left") / len(diff)
    if far[-1] < far_target:
        return 0.0
    j = int(np.searchsorted(far, far_target, side="right")) - 1  # last point with far <= target
    if j < 0:
        return float(VAL_THRESHOLDS[0])
    if j == len(far) - 1 or far[j] == far_target:
        return float(VAL_THRESHOLDS[j])
    t0, t1, f0, f1 = VAL_THRESHOLDS[j], VAL_THRESHOLDS[j + 1], far[j], far[j + 1]
    return float(t0 + (far_target - f0) * (t1 - t0) / (f1 - f0))


def evaluate(embeddings, issame, nrof_folds=10, far_target=1e-3):
    """Verification metrics of flip-summed embeddings [2N, D] on N pairs.

    Returns {"accuracy", "accuracy_std", "threshold" (mean best), "val", "val_std", "far",
    "xnorm" (of the given rows), "fold_accuracy", "fold_threshold", "num_pairs"}.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    same = np.asarray(issame, dtype=bool).reshape(-1)
    if emb.ndim != 2 or len(emb) != 2 * len(same):
        raise ValueError(f"embeddings must be [2N, D] for N={len(same)} pairs, got shape "
                         f"{emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or inf")
    normed = l2_normalize(emb)
    dist = ((normed[0::2] - normed[1::2]) ** 2).sum(axis=1)
    n = len(same)
    accs, best_thresholds, vals, fars = [], [], [], []
    for start, stop in fold_slices(n, nrof_folds):
        train = np.ones(n, dtype=bool)
        train[start:stop] = False
        test = ~train
        curve = _accuracy_curve(dist[train], same[train], ACC_THRESHOLDS)
        best = ACC_THRESHOLDS[int(np.argmax(curve))]
        best_thresholds.append(float(best))
        accs.append(float(((dist[test] < best) == same[test]).mean()))
        thr = _threshold_for_far(dist[train], same[train], far_target)
        val, far = _val_far(thr, dist[test], same[test])
        vals.append(val)
        fars.append(far)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "threshold": float(np.mean(best_thresholds)),
            "val": float(np.mean(vals)), "val_std": float(np.std(vals)),
            "far": float(np.mean(fars)), "far_target": far_target, "xnorm": xnorm(emb),
            "fold_accuracy": accs, "fold_threshold": best_thresholds, "num_pairs": n}


def _embed_all(embed_fn, images, batch_size):
    """embed_fn over images in batches of exactly batch_size where possible.

    The last partial batch re-uses the tail window (as insightface does) so that
    executors bound to a fixed batch shape work.
    """
    n = len(images)
    out = None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        lo = max(0, stop - batch_size)
        emb = np.asarray(embed_fn(np.ascontiguousarray(images[lo:stop])))
        if emb.ndim != 2 or len(emb) != stop - lo:
            raise ValueError(f"embed_fn must return [{stop - lo}, D] for a batch of "
                             f"{stop - lo} images, got shape {emb.shape}")
        if out is None:
            out = np.empty((n, emb.shape[1]), dtype=np.float64)
        out[start:stop] = emb[start - lo:]
    return out


def verify(embed_fn, images, issame, batch_size=64, nrof_folds=10, far_target=1e-3):
    """Embed images and their mirror images, flip-sum, and evaluate (blocking).

    embed_fn: uint8 NHWC RGB batch -> [n, D] numpy embeddings.  images: [2N, H, W, 3]
    uint8 (as from ``jobs.data.face_bin.load_bin``).  The result is ``evaluate``'s dict with
    ``xnorm`` replaced by the mean norm of all raw embeddings (originals and flips).
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) != 2 * len(issame):
        raise ValueError(f"images must be [2N, H, W, C] for N={len(issame)} pairs, got "
                         f"{images.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    emb = _embed_all(embed_fn, images, batch_size)
    emb_flip = _embed_all(embed_fn, images[:, :, ::-1, :], batch_size)
    result = evaluate(flip_sum(emb, emb_flip), issame, nrof_folds, far_target)
    result["xnorm"] = xnorm(np.concatenate([emb, emb_flip]))
    return result
