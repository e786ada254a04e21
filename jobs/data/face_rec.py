"""insightface face RecordIO: writer, reader and the folder -> train.rec packer.

Run as::

    python -m jobs.data.face_rec --src FOLDER --out DIR [--test-ratio 0.1] [--seed 0] \
        [--workers N] [--image-size 112,112] [--quality 95]

Layout (insightface ``rec_builder.py`` / ``FaceImageIter``), in DIR:

* ``train.rec`` / ``train.idx``: images at keys ``1..N`` as
  ``pack(IRHeader(0, float(identity_id), key, 0), jpeg)``, the images of one identity
  contiguous and identities in id order; then one record per identity (keys ``N+1..N+C``)
  with label ``[first_key, last_key + 1]`` and an empty payload; last, key 0 with label
  ``[N+1, N+C+1]`` (the identity table) and ``id2=1``.  Labels are float32, so at most
  2**24 records.
* ``property``: ``num_classes,height,width``.
* Images are JPEG, BGR order as stored by OpenCV (``mx.image.imdecode`` gives RGB).  A JPEG
  already at the target size is stored unchanged; anything else is centre-cropped to the
  target aspect ratio, resized and encoded with ``quality``.

The folder packer (``pack_folder`` / the CLI) takes one sub-folder per identity (id =
index of the sorted name, like ``jobs.data.im2rec``), holds out ``--test-ratio`` of each
identity's images (listed in ``test.lst`` in im2rec's ``.lst`` format, paths relative to
``--src``, not packed), and also writes ``labels.txt`` (line i = identity name) and
``dataset.json`` (written last: its presence means the folder is complete).  Unreadable
images are reported on stderr and skipped, never packed.  All files are written to
temporary names and renamed.  Bad input prints one line and exits with code 2.
"""
import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager

import cv2
import numpy as np

from jobs.data.face_rec_reader import FaceRec, FaceRecError  # noqa: F401 (public API)
from jobs.data.image_folder import FolderError, list_classes, split_items
from jobs.data.im2rec import _encode, _worker_init
from jobs.data.pixels import too_many_pixels

MAX_RECORDS = 2 ** 24  # header labels are float32


def fit_image(img, size):
    """Centre-crop `img` to the aspect ratio of size=(H, W), then resize to exactly it."""
    th, tw = size
    h, w = img.shape[:2]
    if (h, w) == (th, tw):
        return img
    if h * tw > w * th:          # too tall: crop rows
        ch = max(1, round(w * th / tw))
        y = (h - ch) // 2
        img = img[y:y + ch]
    elif h * tw < w * th:        # too wide: crop columns
        cw = max(1, round(h * tw / th))
        x = (w - cw) // 2
        img = img[:, x:x + cw]
    interp = cv2.INTER_AREA if img.shape[0] > th else cv2.INTER_LINEAR
    return cv2.resize(img, (tw, th), interpolation=interp)


def _prepare(job):
    """Worker: (bytes or path, (H, W), quality) -> (jpeg bytes or None, error text)."""
    item, size, quality = job
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    else:
        try:
            with open(item, "rb") as f:
                data = f.read()
        except OSError as e:
            return None, f"cannot read: {e.strerror or e}"
    bomb = too_many_pixels(io.BytesIO(data))
    if bomb:
        return None, bomb
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        return None, "not a decodable image (corrupt or unsupported format)"
    if img.shape[:2] == tuple(size) and data[:3] == b"\xff\xd8\xff":
        return data, ""                                    # already a JPEG of the right size
    ok, buf = cv2.imencode(".jpg", fit_image(img, size), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return (buf.tobytes(), "") if ok else (None, "JPEG encoding failed")


@contextmanager
def _maybe_pool(workers):
    """A fork pool of `workers` processes (None for 1): decoding is CPU bound."""
    if workers <= 1:
        yield None
        return
    import multiprocessing
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _describe(item):
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<{len(item)} bytes>"


def _check_size(image_size, quality):
    if len(image_size) != 2 or min(image_size) < 1 or not 1 <= quality <= 100:
        raise FaceRecError(f"need image size (height, width) >= 1 px and 1 <= quality <= 100, "
                           f"got {tuple(image_size)}, {quality}")


def _write_records(folder, num_identities, owners, items, results, progress):
    """Image records, identity records, then the key-0 table; returns (counts, skipped)."""
    import mxnet as mx  # only the writer needs mxnet
    pack, header = mx.recordio.pack, mx.recordio.IRHeader
    writer = mx.recordio.MXIndexedRecordIO(os.path.join(folder, "train.idx"),
                                           os.path.join(folder, "train.rec"), "w")
    counts, skipped, key, last_report = [0] * num_identities, [], 1, time.time()
    try:
        for done, (ident, item, (data, err)) in enumerate(zip(owners, items, results), 1):
            if data is None:
                skipped.append((ident, _describe(item), err))
                if progress:
                    print(f"[face_rec] skipped {_describe(item)}: {err}", file=sys.stderr,
                          flush=True)
            else:
                writer.write_idx(key, pack(header(0, float(ident), key, 0), data))
                counts[ident] += 1
                key += 1
            if progress and (time.time() - last_report > 2 or done == len(items)):
                last_report = time.time()
                print(f"[face_rec] {done}/{len(items)} images", file=sys.stderr, flush=True)
        first_identity, start = key, 1
        for count in counts:
            writer.write_idx(key, pack(header(0, [start, start + count], key, 0), b""))
            start, key = start + count, key + 1
        writer.write_idx(0, pack(header(0, [first_identity, key], 0, 1), b""))
    finally:
        writer.close()
    return counts, skipped


def write_face_rec(out_dir, identities, image_size=(112, 112), quality=95, workers=1,
                   progress=False):
    """Write train.rec/train.idx/property for `identities` into out_dir (blocking).

    identities: iterable of lists (one per identity, ids 0..C-1 in order) of encoded
    image bytes or image paths.  Unreadable images are skipped and reported (stderr when
    `progress`); an identity may end up empty (its range is empty).  Files are written
    under temporary names and renamed, ``property`` last.  Returns {"num_classes",
    "num_images", "image_size": [H, W], "skipped": [(identity, path or "<n bytes>",
    reason)], "empty_identities": [ids]}.
    """
    image_size = tuple(int(v) for v in image_size)
    _check_size(image_size, quality)
    identities = [list(images) for images in identities]
    owners = [i for i, images in enumerate(identities) for _ in images]
    items = [item for images in identities for item in images]
    if not identities:
        raise FaceRecError("no identities to write")
    if len(items) + len(identities) + 1 > MAX_RECORDS:
        raise FaceRecError(f"{len(items)} images + {len(identities)} identities exceed the "
                           f"{MAX_RECORDS} records float32 labels can address")
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".face_rec-tmp-", dir=out_dir)
    try:
        with _maybe_pool(workers) as pool:  # fork before mxnet starts its engine threads
            jobs = [(item, image_size, quality) for item in items]
            results = pool.imap(_prepare, jobs, chunksize=8) if pool else map(_prepare, jobs)
            counts, skipped = _write_records(tmp, len(identities), owners, items, results,
                                             progress)
        with open(os.path.join(tmp, "property"), "w") as f:
            f.write(f"{len(identities)},{image_size[0]},{image_size[1]}\n")
        for name in ("train.idx", "train.rec", "property"):  # property last
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    empty = [i for i, c in enumerate(counts) if c == 0]
    if progress and empty:
        print(f"[face_rec] warning: {len(empty)} identities have no packed image (ids "
              f"{empty[:10]}{' ...' if len(empty) > 10 else ''})", file=sys.stderr, flush=True)
    return {"num_classes": len(identities), "num_images": sum(counts),
            "image_size": list(image_size), "skipped": skipped, "empty_identities": empty}


def _held_out(src, entries, workers):
    """Test entries whose image decodes; [(rel, reason)] for the others."""
    jobs = [(os.path.join(src, rel), 0, 95, False) for _, rel, _ in entries]
    with _maybe_pool(workers) as pool:
        results = list(pool.imap(_encode, jobs, chunksize=8) if pool else map(_encode, jobs))
    kept = [e for e, (data, _) in zip(entries, results) if data is not None]
    bad = [(e[1], err) for e, (data, err) in zip(entries, results) if data is None]
    return kept, bad


def pack_folder(src, out, test_ratio=0.1, seed=0, workers=1, image_size=(112, 112),
                quality=95, extra=None, progress=True):
    """Pack an identity folder into `out` (see the module docstring); return dataset.json.

    `extra` (a dict) is merged into dataset.json.  The returned dict also holds
    "skipped": [(relative path, reason)].  Raises FaceRecError on bad arguments/input.
    """
    if not 0 <= test_ratio < 1:
        raise FaceRecError(f"--test-ratio must be in [0, 1), got {test_ratio}")
    _check_size(image_size, quality)
    src, out = os.path.abspath(src), os.path.abspath(out)
    if os.path.commonpath([src, out]) == src:
        raise FaceRecError(f"--out {out} must not be inside --src {src} (it would become an "
                           f"identity folder); choose a folder outside it")
    try:
        names, items = list_classes(src)
    except FolderError as e:
        raise FaceRecError(str(e).replace("class", "identity")) from None
    splits = split_items(items, 0.0, test_ratio, seed)
    train = sorted(splits["train"])                # identity order, then file order
    test, bad_test = _held_out(src, splits["test"], workers)
    if progress:
        for rel, err in bad_test:
            print(f"[face_rec] skipped {os.path.join(src, rel)}: {err}", file=sys.stderr,
                  flush=True)
    paths = [[] for _ in names]
    for _, rel, label in train:
        paths[label].append(os.path.join(src, rel))
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".face_rec-pack-", dir=out)
    try:
        summary = write_face_rec(tmp, paths, image_size, quality, workers, progress)
        skipped = [(os.path.relpath(p, src), err) for _, p, err in summary["skipped"]] + bad_test
        info = {"num_classes": len(names), "num_images": summary["num_images"],
                "image_size": summary["image_size"], "num_test": len(test),
                "num_skipped": len(skipped), "empty_identities": summary["empty_identities"],
                "quality": quality, "seed": seed, "test_ratio": test_ratio, "src": src,
                **(extra or {})}
        with open(os.path.join(tmp, "labels.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        with open(os.path.join(tmp, "test.lst"), "w") as f:
            f.write("".join(f"{gid}\t{float(label):f}\t{rel}\n" for gid, rel, label in test))
        with open(os.path.join(tmp, "dataset.json"), "w") as f:
            json.dump(info, f, indent=1)
        for name in ("train.idx", "train.rec", "property", "labels.txt", "test.lst",
                     "dataset.json"):              # dataset.json last
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"[face_rec] {len(names)} identities: {info['num_images']} images packed, "
              f"{len(test)} held out in test.lst, {len(skipped)} unreadable skipped -> {out}",
              file=sys.stderr, flush=True)
    return dict(info, skipped=skipped)


def _image_size_arg(text):
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH such as 112,112, got {text!r}")
    return h, w


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jobs.data.face_rec",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="folder with one sub-folder per identity")
    parser.add_argument("--out", required=True, help="output folder for train.rec etc.")
    parser.add_argument("--test-ratio", type=float, default=0.1,
                        help="share of each identity's images held out in test.lst")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test split")
    parser.add_argument("--workers", type=int, default=0,
                        help="decode processes (default: number of CPUs)")
    parser.add_argument("--image-size", type=_image_size_arg, default=(112, 112),
                        help="HEIGHT,WIDTH of the packed images (default 112,112)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100")
    args = parser.parse_args(argv)
    try:
        pack_folder(args.src, args.out, args.test_ratio, args.seed,
                    args.workers or os.cpu_count() or 1, args.image_size, args.quality)
    except FaceRecError as e:
        print(f"face_rec: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
