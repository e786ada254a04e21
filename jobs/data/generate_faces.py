"""Generate a synthetic face-recognition data set: training .rec plus a verification .bin.

Run as::

    python -m jobs.data.generate_faces --out DIR --identities 20 --images-per-identity 30 \
        --verify-identities 20 --pairs 600 --seed 0 [--bin-name lfw] [--baselines]

Contract:

* ``DIR/images/id_NNNN/id_NNNN_MMMM.jpg``: the training identities (112x112 JPEG, quality
  95), drawn by ``jobs.data.face_synth``.
* ``DIR/verify/vid_NNNN/...`` and ``DIR/verify/pairs.txt``: the verification identities,
  disjoint from the training ones (their traits come from another random stream), and the
  pair list (``pathA<TAB>pathB<TAB>1|0``).
* ``DIR/packed/``: ``jobs.data.face_rec`` output for ``DIR/images`` (train.rec, train.idx,
  property, labels.txt, test.lst with ``--test-ratio`` held out, dataset.json with a
  ``generator`` entry) and ``<bin-name>.bin`` built from pairs.txt by ``jobs.data.face_bin``.
  Pairs are balanced: half same, half different, every contiguous tenth (a protocol
  fold) holding both kinds.
* Deterministic: every image has its own generator seeded by (seed, role, identity,
  image).  Idempotent: when ``DIR/packed/dataset.json`` records the same arguments nothing
  is rewritten.  Atomic: built in a temporary sibling folder and renamed; an existing DIR
  is replaced only if this generator made it (or it is empty).
* ``--baselines`` prints the verification accuracy of random embeddings and of raw-pixel
  cosine similarity on the .bin (what an untrained network should not beat by much).
* Bad arguments print one line and exit with code 2.
"""
import argparse
import json
import os
import re
import sys
import time

import cv2
import numpy as np

from jobs.data import face_bin, face_rec, face_synth
from jobs.common.swap import building

TRAIN, VERIFY = 0, 1  # roles: separate random streams make the two identity sets disjoint


class GenerateError(ValueError):
    """Bad arguments or an output folder we must not touch (one-line message)."""


def _names(prefix, n):
    width = max(4, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


def _write_identity(folder, name, role, index, count, seed, quality):
    """Render `count` images of one identity into folder/name/; return relative paths."""
    traits = face_synth.identity(np.random.default_rng([seed, 7, role, index]))
    os.mkdir(os.path.join(folder, name))
    rels = []
    for j in range(count):
        rgb = face_synth.render(traits, np.random.default_rng([seed, 11, role, index, j]))
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise OSError(f"JPEG encoding failed for {name} image {j}")
        rels.append(f"{name}/{name}_{j:04d}.jpg")
        with open(os.path.join(folder, rels[-1]), "wb") as f:
            f.write(buf.tobytes())
    return rels


def _pair_list(rng, verify_rels, n_pairs):
    """[(relA, relB, same)]: balanced, distinct pairs, each tenth holding both kinds."""
    flags = [k % 2 == 0 for k in range(n_pairs)]
    fold = max(2, n_pairs // 10)
    for start in range(0, n_pairs, fold):  # shuffle inside folds only: folds stay balanced
        chunk = flags[start:start + fold]
        rng.shuffle(chunk)
        flags[start:start + fold] = chunk
    seen, out, n_ids = set(), [], len(verify_rels)
    for k, same in enumerate(flags):
        for _ in range(1000):
            if same:
                ident = (k // 2) % n_ids
                i, j = rng.choice(len(verify_rels[ident]), 2, replace=False)
                pair = (verify_rels[ident][i], verify_rels[ident][j])
            else:
                a, b = rng.choice(n_ids, 2, replace=False)
                pair = (verify_rels[a][rng.integers(len(verify_rels[a]))],
                        verify_rels[b][rng.integers(len(verify_rels[b]))])
            if pair not in seen and pair[::-1] not in seen:
                break
        seen.add(pair)
        out.append((pair[0], pair[1], same))
    return out


def _check_args(p):
    if p["identities"] < 2 or p["images_per_identity"] < 2 or p["verify_identities"] < 2:
        raise GenerateError("need --identities >= 2, --images-per-identity >= 2 and "
                            "--verify-identities >= 2")
    if p["pairs"] < 20 or p["pairs"] % 2:
        raise GenerateError(f"--pairs must be even and >= 20 (10 folds with both kinds), "
                            f"got {p['pairs']}")
    if p["seed"] < 0 or not 0 <= p["test_ratio"] < 1 or not 1 <= p["quality"] <= 100:
        raise GenerateError("need --seed >= 0, 0 <= --test-ratio < 1, 1 <= --quality <= 100")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", p["bin_name"]):
        raise GenerateError(f"--bin-name must be a plain file name stem such as lfw, got "
                            f"{p['bin_name']!r}")


def _recorded_params(out_dir):
    """The generator entry of DIR/packed/dataset.json, or None."""
    try:
        with open(os.path.join(out_dir, "packed", "dataset.json")) as f:
            return json.load(f).get("generator")
    except (OSError, ValueError, AttributeError):
        return None


def generate(out_dir, identities=20, images_per_identity=30, verify_identities=20,
             pairs=600, seed=0, bin_name="lfw", test_ratio=0.1, quality=95, progress=True):
    """Build the data set in `out_dir` (blocking, atomic, idempotent); return dataset.json.

    Raises GenerateError on bad arguments or when out_dir holds foreign content.
    """
    params = {"identities": identities, "images_per_identity": images_per_identity,
              "verify_identities": verify_identities, "pairs": pairs, "seed": seed,
              "bin_name": bin_name, "test_ratio": test_ratio, "quality": quality}
    _check_args(params)
    out_dir = os.path.abspath(out_dir)
    bin_path = os.path.join(out_dir, "packed", bin_name + ".bin")
    if _recorded_params(out_dir) == params and os.path.isfile(bin_path):
        if progress:
            print(f"[generate_faces] {out_dir} is up to date", file=sys.stderr)
        with open(os.path.join(out_dir, "packed", "dataset.json")) as f:
            return json.load(f)
    if (os.path.exists(out_dir) and _recorded_params(out_dir) is None
            and (not os.path.isdir(out_dir) or os.listdir(out_dir))):
        raise GenerateError(f"{out_dir} exists and was not made by this generator (no "
                            f"packed/dataset.json); choose another --out or remove it")
    t0 = time.time()
    with building(out_dir) as tmp:
        images, verify = os.path.join(tmp, "images"), os.path.join(tmp, "verify")
        os.mkdir(images)
        os.mkdir(verify)
        for i, name in enumerate(_names("id", identities)):
            _write_identity(images, name, TRAIN, i, images_per_identity, seed, quality)
        verify_rels = [_write_identity(verify, name, VERIFY, i, images_per_identity, seed,
                                       quality)
                       for i, name in enumerate(_names("vid", verify_identities))]
        pair_list = _pair_list(np.random.default_rng([seed, 13]), verify_rels, pairs)
        with open(os.path.join(verify, "pairs.txt"), "w") as f:
            f.write("".join(f"{a}\t{b}\t{int(s)}\n" for a, b, s in pair_list))
        if progress:
            count = (identities + verify_identities) * images_per_identity
            print(f"[generate_faces] rendered {count} images in {time.time() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        packed = os.path.join(tmp, "packed")
        os.mkdir(packed)
        face_bin.build_bin(os.path.join(verify, "pairs.txt"), verify,
                           os.path.join(packed, bin_name + ".bin"))
        info = face_rec.pack_folder(images, packed, test_ratio, seed, workers=1,
                                    quality=quality, progress=progress,
                                    extra={"generator": params, "verification_bin":
                                           bin_name + ".bin", "num_pairs": pairs})
        info.pop("skipped")
        info["src"] = os.path.join(out_dir, "images")  # where it lives after the rename
        with open(os.path.join(packed, "dataset.json"), "w") as f:
            json.dump(info, f, indent=1)
    if progress:
        print(f"[generate_faces] {identities} training identities x {images_per_identity}, "
              f"{pairs} pairs from {verify_identities} other identities -> {out_dir} "
              f"({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)
    return info


def baselines(bin_path, seed=0):
    """Verification accuracy of random 128-d embeddings and of raw pixels on a .bin."""
    from jobs.face_recognition import verification
    images, issame = face_bin.load_bin(bin_path)
    rng = np.random.default_rng(seed)
    random = verification.evaluate(rng.normal(size=(len(images), 128)), issame)
    pixels = verification.verify(lambda b: b.reshape(len(b), -1).astype(np.float32),
                                 images, issame)
    return {"random": random["accuracy"], "raw_pixels": pixels["accuracy"]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jobs.data.generate_faces",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--identities", type=int, default=20, help="training identities")
    parser.add_argument("--images-per-identity", type=int, default=30)
    parser.add_argument("--verify-identities", type=int, default=20,
                        help="identities of the verification pairs (disjoint from training)")
    parser.add_argument("--pairs", type=int, default=600, help="verification pairs (even)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bin-name", default="lfw", help="name of the .bin in DIR/packed")
    parser.add_argument("--test-ratio", type=float, default=0.1,
                        help="share of each training identity held out in test.lst")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100")
    parser.add_argument("--baselines", action="store_true",
                        help="print random-embedding and raw-pixel verification accuracy")
    args = parser.parse_args(argv)
    try:
        generate(args.out, args.identities, args.images_per_identity, args.verify_identities,
                 args.pairs, args.seed, args.bin_name, args.test_ratio, args.quality)
    except (GenerateError, face_rec.FaceRecError, face_bin.FaceBinError) as e:
        print(f"generate_faces: error: {e}", file=sys.stderr)
        return 2
    if args.baselines:
        result = baselines(os.path.join(args.out, "packed", args.bin_name + ".bin"), args.seed)
        print(f"baselines on {args.bin_name}.bin: random embeddings "
              f"{100 * result['random']:.1f} %, raw pixels {100 * result['raw_pixels']:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
