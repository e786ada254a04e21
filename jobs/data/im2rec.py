"""Pack an image folder (one sub-folder per class) into MXNet RecordIO train/val files.

Run as::

    python -m jobs.data.im2rec IMAGE_ROOT OUT_DIR --val-ratio 0.2 --test-ratio 0.1 \
        --resize 72 --quality 90 --seed 0 --workers 2

Contract (compatible with MXNet's tools/im2rec.py and ``mx.io.ImageRecordIter``):

* Class id = index of the class sub-folder in sorted order; images are the files with
  extension .jpg .jpeg .png .bmp (any case) anywhere below a class folder.
* Each class is split on its own (stratified) into train / val / test with ``--seed``;
  a class with at least 3 images gets at least one image in each split whose ratio is > 0.
  Lists are then shuffled (like im2rec); ``idx`` is the image's global id (unique over
  all splits).
* OUT_DIR receives ``train.lst/.rec/.idx``, ``val.lst/.rec/.idx``, ``test.lst``,
  ``labels.txt`` (line i = name of class i) and ``dataset.json`` (written last).
  ``.lst`` lines are ``idx \\t label(%f) \\t relative/path`` with paths relative to
  IMAGE_ROOT.  Records are ``pack(IRHeader(0, label, idx, 0), jpeg)``, byte-identical to
  ``mx.recordio.pack_img`` of the BGR image resized so its shorter edge is ``--resize``
  (0 keeps the size; shrinking uses cv2.INTER_AREA, enlarging INTER_LINEAR, recorded as
  ``"resize_interpolation": "area/linear"``; the inference service repeats exactly this).
  Test images are only listed, not packed.
* Unreadable images are reported on stderr (path + reason), skipped (never listed or
  packed) and counted in the summary and in dataset.json ``num_skipped``.
* Worker processes decode/resize/encode; one writer (this process) keeps list order.
* Every output file is written to a temporary name and renamed into place.
* Bad arguments print one line and exit with code 2.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import cv2

from jobs.data.image_folder import SPLITS, FolderError, list_classes, split_items
from jobs.data.pixels import too_many_pixels


class Im2RecError(ValueError):
    """Bad arguments (one-line message)."""


def resize_shorter(img, size):
    """Resize so the shorter edge is `size` (0 = unchanged); floor for the other edge."""
    h, w = img.shape[:2]
    if size <= 0 or min(h, w) == size:
        return img
    if h < w:
        new_w, new_h = max(1, w * size // h), size
    else:
        new_w, new_h = size, max(1, h * size // w)
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def _encode(job):
    """Worker: (path, resize, quality, pack) -> (jpeg bytes or b"" or None, error text)."""
    path, resize, quality, pack = job
    bomb = too_many_pixels(path)
    if bomb:
        return None, bomb
    try:
        img = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, alpha dropped, gray -> 3 channels
    except cv2.error as e:
        return None, f"OpenCV error: {e}"
    if img is None:
        if not os.path.exists(path):
            return None, "file vanished"
        return None, "not a decodable image (corrupt or unsupported format)"
    if not pack:
        return b"", ""
    img = resize_shorter(img, resize)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return None, "JPEG encoding failed"
    return buf.tobytes(), ""


def _worker_init():
    cv2.setNumThreads(1)  # one process per core already; avoid oversubscription


class _Progress:
    """A progress bar on stderr: redrawn in place on a terminal, else a line every 2 s."""

    def __init__(self, name, total):
        self.name, self.total = name, total
        self.t0 = self.last = time.time()
        self.tty = sys.stderr.isatty()

    def update(self, done):
        now = time.time()
        if done != self.total and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        pct = 100 * done // max(self.total, 1)
        rate = done / max(now - self.t0, 1e-6)
        bar = "#" * (pct // 5) + "." * (20 - pct // 5)
        end = "\r" if self.tty and done != self.total else "\n"
        sys.stderr.write(f"[im2rec] {self.name:5s} [{bar}] {done}/{self.total} "
                         f"{rate:.0f} img/s{end}")
        sys.stderr.flush()


def _process_split(name, entries, image_root, tmp, opts, pool, progress):
    """Decode (and pack unless test) one split; write .lst (+ .rec/.idx) into tmp.

    Returns (kept_entries, skipped [(rel_path, reason)]).
    """
    import mxnet as mx  # only the writer needs mxnet
    pack = name != "test"
    jobs = [(os.path.join(image_root, rel), opts["resize"], opts["quality"], pack)
            for _, rel, _ in entries]
    results = pool.imap(_encode, jobs, chunksize=8) if pool else map(_encode, jobs)
    writer = None
    if pack:
        writer = mx.recordio.MXIndexedRecordIO(os.path.join(tmp, name + ".idx"),
                                               os.path.join(tmp, name + ".rec"), "w")
    kept, skipped = [], []
    bar = _Progress(name, len(entries)) if progress else None
    try:
        for done, ((gid, rel, label), (data, err)) in enumerate(zip(entries, results), 1):
            if data is None:
                skipped.append((rel, err))
                print(f"[im2rec] skipped {os.path.join(image_root, rel)}: {err}",
                      file=sys.stderr, flush=True)
            else:
                kept.append((gid, rel, label))
                if writer:
                    header = mx.recordio.IRHeader(0, float(label), gid, 0)
                    writer.write_idx(gid, mx.recordio.pack(header, data))
            if bar:
                bar.update(done)
    finally:
        if writer:
            writer.close()
    with open(os.path.join(tmp, name + ".lst"), "w") as f:
        for gid, rel, label in kept:
            f.write(f"{gid}\t{float(label):f}\t{rel}\n")
    return kept, skipped


def im2rec(image_root, out_dir, val_ratio=0.2, test_ratio=0.1, resize=0, quality=95,
           seed=0, workers=None, progress=True):
    """Build the RecordIO data set; return the dataset.json dict (plus "skipped" list)."""
    if not (0 <= val_ratio < 1 and 0 <= test_ratio < 1 and val_ratio + test_ratio < 1):
        raise Im2RecError(f"need 0 <= ratios and val_ratio + test_ratio < 1, got "
                          f"val {val_ratio}, test {test_ratio}")
    if resize < 0 or not 1 <= quality <= 100:
        raise Im2RecError(f"need --resize >= 0 and 1 <= --quality <= 100, got {resize}, {quality}")
    image_root, out_dir = os.path.abspath(image_root), os.path.abspath(out_dir)
    if os.path.commonpath([image_root, out_dir]) == image_root:
        # It would become a "class" folder of the next run and shift every label.
        raise Im2RecError(f"OUT_DIR {out_dir} must not be inside IMAGE_ROOT {image_root}; "
                          f"choose a folder outside it")
    classes, items = list_classes(image_root)
    splits = split_items(items, val_ratio, test_ratio, seed)
    workers = workers or os.cpu_count() or 1
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".im2rec-tmp-", dir=out_dir)
    pool = None
    try:
        if workers > 1:  # fork is cheap and the workers only use cv2
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
        opts = {"resize": resize, "quality": quality}
        kept, skipped = {}, []
        for name in SPLITS:
            kept[name], bad = _process_split(name, splits[name], image_root, tmp, opts,
                                             pool, progress)
            skipped += bad
        info = {"classes": classes, "num_classes": len(classes),
                "num_train": len(kept["train"]), "num_val": len(kept["val"]),
                "num_test": len(kept["test"]), "num_skipped": len(skipped),
                "resize": resize, "resize_interpolation": "area/linear",
                "quality": quality, "seed": seed, "val_ratio": val_ratio,
                "test_ratio": test_ratio, "image_root": image_root}
        with open(os.path.join(tmp, "labels.txt"), "w") as f:
            f.write("".join(c + "\n" for c in classes))
        with open(os.path.join(tmp, "dataset.json"), "w") as f:
            json.dump(info, f, indent=1)
        # dataset.json goes last: its presence means the rest is complete.
        names = [f for f in sorted(os.listdir(tmp)) if f != "dataset.json"] + ["dataset.json"]
        for f in names:
            os.replace(os.path.join(tmp, f), os.path.join(out_dir, f))
    finally:
        if pool:
            pool.terminate()
            pool.join()
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"[im2rec] {len(classes)} classes: train {info['num_train']}, val "
              f"{info['num_val']}, test {info['num_test']} (listed only), skipped "
              f"{len(skipped)} unreadable -> {out_dir}", file=sys.stderr, flush=True)
    return dict(info, skipped=skipped)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image_root", help="folder with one sub-folder of images per class")
    parser.add_argument("out_dir", help="folder for the .lst/.rec/.idx files")
    parser.add_argument("--val-ratio", type=float, default=0.2)
    parser.add_argument("--test-ratio", type=float, default=0.1)
    parser.add_argument("--resize", type=int, default=0,
                        help="shorter edge of packed images in px (0 = keep)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and shuffle")
    parser.add_argument("--workers", type=int, default=0,
                        help="decode processes (default: number of CPUs)")
    args = parser.parse_args(argv)
    try:
        im2rec(args.image_root, args.out_dir, args.val_ratio, args.test_ratio, args.resize,
               args.quality, args.seed, args.workers)
    except (Im2RecError, FolderError) as e:
        print(f"im2rec: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
