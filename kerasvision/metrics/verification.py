"""Verification and identification from embeddings: ROC, AUC, TAR at a FAR, top-1.

The notes' person recognition asks two questions of an embedding:

- verification (1:1): do these two images show the same identity? Each pair
  gets a score (here the negative distance of the two embeddings) and a
  threshold decides; sweeping the threshold traces the ROC curve of true
  accepts (TAR, same-identity pairs accepted) against false accepts (FAR,
  different-identity pairs accepted), summarised by its area (AUC) and by the
  TAR at a fixed FAR (as face benchmarks such as LFW report it).
- identification (1:N): whose image is this? Each probe image takes the
  identity of its nearest gallery embedding; top-1 is the share right.

Everything here is numpy on arrays the caller computed (embeddings from a
network, or PCA projections from `kerasvision.models.eigen`), so a baseline and
a learned embedding are measured by the same code.

Example:

```python
first, second, same = make_verification_pairs(identities, num_pairs=2000, seed=0)
report = evaluate_verification(embeddings, identities, first, second, same)
report["auc"], report["tar_at_far"], report["top1"]
```
"""

import numpy as np

from kerasvision.validation import check_float, check_int, check_seed


def _as_embeddings(name, x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty [num_images, embedding_dim] array; received shape "
            f"{x.shape}."
        )
    return x


def _as_labels(name, x, length=None):
    x = np.asarray(x)
    if x.ndim != 1 or (length is not None and x.shape[0] != length):
        expected = f"[{length}]" if length is not None else "[num_images]"
        raise ValueError(f"`{name}` must have shape {expected}; received shape {x.shape}.")
    return x


def _scores_and_same(scores, same):
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    same = np.asarray(same).reshape(-1)
    if scores.shape != same.shape:
        raise ValueError(
            f"`scores` and `same` must have one entry per pair; received {scores.size} scores "
            f"and {same.size} labels."
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"`scores` must be finite; received {int((~np.isfinite(scores)).sum())} "
                         "non-finite values.")
    same = same.astype(bool)
    if same.all() or not same.any():
        raise ValueError(
            "`same` must hold both same-identity (True) and different-identity (False) pairs; "
            f"received {int(same.sum())} of {same.size} True."
        )
    return scores, same


def pair_distances(embeddings, first, second):
    """Euclidean distance of each pair `(embeddings[first[i]], embeddings[second[i]])`.

    Args:
        embeddings: float `[N, D]`.
        first, second: int `[P]`, row indices of the pairs.

    Returns:
        float64 `[P]`.
    """
    embeddings = _as_embeddings("embeddings", embeddings)
    first = _as_labels("first", first).astype(np.int64)
    second = _as_labels("second", second, len(first)).astype(np.int64)
    return np.linalg.norm(embeddings[first] - embeddings[second], axis=1)


def make_verification_pairs(identities, num_pairs, seed=0):
    """Draw balanced verification pairs: half the same identity, half different.

    As LFW's test protocol does (equal numbers of matched and mismatched
    pairs), so that the AUC and the accuracy at the best threshold do not
    depend on the ratio of the two. Same-identity pairs pick an identity with
    at least two images, then two different images of it; different-identity
    pairs pick two images of different identities. Pairs may repeat.

    Args:
        identities: int `[N]`, the identity of each image (at least two
            identities, one of them with two images or more).
        num_pairs: int >= 2, pairs `P` (an odd count gets one more different pair).
        seed: int >= 0.

    Returns:
        `(first, second, same)`: int64 `[P]` image indices and bool `[P]`
        (True: same identity), same-identity pairs first.
    """
    identities = _as_labels("identities", identities)
    num_pairs = check_int("num_pairs", num_pairs, minimum=2)
    rng = np.random.default_rng(check_seed(seed))
    found, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    if found.size < 2 or counts.max() < 2:
        raise ValueError(
            "`identities` must hold at least two identities, one with two images or more; "
            f"received {found.size} identities with at most {counts.max()} images each."
        )
    members = [np.flatnonzero(inverse == k) for k in range(found.size)]
    num_same = num_pairs // 2
    # Same: an identity (weighted by its number of pairs), then two of its images.
    repeated = np.flatnonzero(counts >= 2)
    weights = counts[repeated] * (counts[repeated] - 1.0)
    chosen = rng.choice(repeated, size=num_same, p=weights / weights.sum())
    first_same, second_same = np.empty(num_same, np.int64), np.empty(num_same, np.int64)
    for i, k in enumerate(chosen):
        first_same[i], second_same[i] = rng.choice(members[k], size=2, replace=False)
    # Different: two images drawn until their identities differ.
    num_different = num_pairs - num_same
    first_diff = rng.integers(0, identities.size, num_different)
    second_diff = rng.integers(0, identities.size, num_different)
    clash = inverse[first_diff] == inverse[second_diff]
    while clash.any():
        second_diff[clash] = rng.integers(0, identities.size, int(clash.sum()))
        clash = inverse[first_diff] == inverse[second_diff]
    first = np.concatenate([first_same, first_diff])
    second = np.concatenate([second_same, second_diff])
    same = np.concatenate([np.ones(num_same, bool), np.zeros(num_different, bool)])
    return first, second, same


def verification_roc(scores, same):
    """The ROC curve of pair scores: FAR and TAR at every distinct threshold.

    A pair is accepted as "same identity" when its score is >= the threshold;
    higher scores must mean more alike (use negative distances).

    Args:
        scores: float `[P]`, one score per pair.
        same: bool `[P]`, whether each pair shows one identity (both kinds needed).

    Returns:
        `(far, tar, thresholds)`: float64 arrays of the curve's points, from
        `(0, 0)` at threshold `+inf` to `(1, 1)` at the lowest score; `far` is
        the share of different-identity pairs accepted (false positive rate),
        `tar` the share of same-identity pairs accepted (true positive rate).
        Tied scores make one point, so the curve does not depend on the order
        of the pairs.
    """
    scores, same = _scores_and_same(scores, same)
    order = np.argsort(-scores, kind="stable")
    scores, same = scores[order], same[order]
    # The last pair of each run of equal scores closes that threshold's point.
    last_of_run = np.r_[scores[1:] != scores[:-1], True]
    true_accepts = np.cumsum(same)[last_of_run]
    false_accepts = np.cumsum(~same)[last_of_run]
    tar = np.r_[0.0, true_accepts / same.sum()]
    far = np.r_[0.0, false_accepts / (~same).sum()]
    thresholds = np.r_[np.inf, scores[last_of_run]]
    return far, tar, thresholds


def verification_auc(scores, same):
    """Area under the verification ROC curve (trapezoids between its points).

    Equals the probability that a random same-identity pair scores higher
    than a random different-identity pair, ties counting one half (0.5:
    chance, 1: perfect).

    Args:
        scores: float `[P]`; same: bool `[P]` (as `verification_roc`).

    Returns:
        float in [0, 1].
    """
    far, tar, _ = verification_roc(scores, same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def tar_at_far(scores, same, far=0.01):
    """True accept rate at the strictest threshold whose false accept rate is at most `far`.

    Args:
        scores: float `[P]`; same: bool `[P]` (as `verification_roc`).
        far: float in [0, 1], the false accept rate allowed.

    Returns:
        float, the largest TAR of a ROC point with FAR <= `far`. With `P/2`
        different pairs, FARs below `2/P` can only be met with zero false
        accepts: draw enough pairs for the FAR asked.
    """
    far_limit = check_float("far", far, minimum=0.0, maximum=1.0)
    curve_far, curve_tar, _ = verification_roc(scores, same)
    return float(curve_tar[curve_far <= far_limit + 1e-12].max())


def gallery_probe_split(identities, seed=0):
    """One gallery image per identity (chosen at random), the others as probes.

    Args:
        identities: int `[N]`; identities with a single image go to the
            gallery only (they cannot be probed).
        seed: int >= 0.

    Returns:
        `(gallery, probes)`: int64 index arrays, gallery sorted by identity.
    """
    identities = _as_labels("identities", identities)
    rng = np.random.default_rng(check_seed(seed))
    gallery = []
    for identity in np.unique(identities):
        gallery.append(rng.choice(np.flatnonzero(identities == identity)))
    gallery = np.asarray(gallery, np.int64)
    probes = np.setdiff1d(np.arange(identities.size), gallery)
    return gallery, probes


def identification_top1(gallery_embeddings, gallery_identities, probe_embeddings,
                        probe_identities):
    """Top-1 identification: each probe takes the identity of its nearest gallery embedding.

    Args:
        gallery_embeddings: float `[G, D]`; gallery_identities: `[G]`.
        probe_embeddings: float `[Q, D]`; probe_identities: `[Q]`.

    Returns:
        float in [0, 1], the share of probes whose nearest gallery embedding
        (Euclidean distance; ties to the first) has their identity.
    """
    gallery = _as_embeddings("gallery_embeddings", gallery_embeddings)
    probes = _as_embeddings("probe_embeddings", probe_embeddings)
    gallery_ids = _as_labels("gallery_identities", gallery_identities, gallery.shape[0])
    probe_ids = _as_labels("probe_identities", probe_identities, probes.shape[0])
    if gallery.shape[1] != probes.shape[1]:
        raise ValueError(
            "`gallery_embeddings` and `probe_embeddings` must have the same embedding size; "
            f"received {gallery.shape[1]} and {probes.shape[1]}."
        )
    squared = ((probes ** 2).sum(1)[:, None] - 2.0 * probes @ gallery.T
               + (gallery ** 2).sum(1)[None, :])
    nearest = np.argmin(squared, axis=1)
    return float(np.mean(gallery_ids[nearest] == probe_ids))


def evaluate_verification(embeddings, identities, first, second, same, far=0.01, seed=0):
    """Verification and identification figures of one embedding of a set of images.

    Args:
        embeddings: float `[N, D]`, one per image (network outputs, PCA
            projections, or flattened pixels).
        identities: int `[N]`.
        first, second, same: the pairs, from `make_verification_pairs`.
        far: float, the false accept rate of the reported TAR.
        seed: int, the gallery draw of `gallery_probe_split`.

    Returns:
        dict: `auc`, `tar_at_far`, `far`, `top1`, and `roc` (dict of `far`
        and `tar` lists), with scores = negative pair distances.
    """
    embeddings = _as_embeddings("embeddings", embeddings)
    identities = _as_labels("identities", identities, embeddings.shape[0])
    scores = -pair_distances(embeddings, first, second)
    curve_far, curve_tar, _ = verification_roc(scores, same)
    gallery, probes = gallery_probe_split(identities, seed)
    return {
        "auc": verification_auc(scores, same),
        "tar_at_far": tar_at_far(scores, same, far),
        "far": float(far),
        "top1": identification_top1(embeddings[gallery], identities[gallery],
                                    embeddings[probes], identities[probes]),
        "roc": {"far": curve_far.tolist(), "tar": curve_tar.tolist()},
    }
