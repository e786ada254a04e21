"""Find the RecordIO data of a training job and build its ``mx.io.ImageRecordIter``s.

Data folder contract (what ``jobs.data.im2rec`` writes, MXNet's im2rec names also work):

* ``train.rec`` + ``train.idx`` (or ``<prefix>_train.rec`` + ``.idx``), required;
* ``val.rec`` + ``val.idx`` (or ``<prefix>_val.rec``), optional: no validation without it;
* ``labels.txt`` (line i = name of class i) and ``dataset.json`` (``num_classes``,
  ``num_train``, ``resize`` = shorter edge the images were packed with), optional.

Images reach the network as raw 0-255 RGB pixels, NCHW float32: train = shuffle, random
crop + mirror (switchable); val = center crop, no augmentation.  When the data set does
not say it was packed at a shorter edge >= the image side, both iterators resize the
shorter edge to the image side first (see ``preprocessing``), so inference can repeat the
same steps.
"""
import glob
import json
import os

import mxnet as mx


class DataError(ValueError):
    """Missing or inconsistent input data (one-line message)."""


def find_rec(data_dir, split):
    """(rec_path, idx_path or None) for split 'train'/'val', or None when absent or empty
    (im2rec --val-ratio 0 writes an empty val.rec, which ImageRecordIter cannot open)."""
    candidates = [os.path.join(data_dir, split + ".rec")]
    candidates += sorted(glob.glob(os.path.join(data_dir, "*_" + split + ".rec")))
    for rec in candidates:
        if os.path.isfile(rec) and os.path.getsize(rec) > 0:
            idx = rec[:-4] + ".idx"
            return rec, (idx if os.path.isfile(idx) else None)
    return None


def _count_records(rec, idx):
    """Number of records: lines of the .idx, else a scan of the .rec."""
    if idx:
        with open(idx) as f:
            return sum(1 for line in f if line.strip())
    reader = mx.recordio.MXRecordIO(rec, "r")
    count = 0
    while reader.read() is not None:
        count += 1
    reader.close()
    return count


def named_rec(data_dir, name, what):
    """(rec_path, idx_path or None) of the file ``name`` in data_dir (--train_file/--val_file)."""
    rec = os.path.join(data_dir, name)
    if not os.path.isfile(rec) or os.path.getsize(rec) == 0:
        found = ", ".join(sorted(n for n in os.listdir(data_dir) if n.endswith(".rec"))) or "none"
        raise DataError(f"--{what} {name} is not a non-empty file in --data_url {data_dir} (.rec files: {found})")
    idx = os.path.splitext(rec)[0] + ".idx"
    return rec, (idx if os.path.isfile(idx) else None)


def describe(data_dir, train_file=None, val_file=None):
    """Everything train.py needs to know about the data folder (a dict). ``train_file`` /
    ``val_file`` name the RecordIO files (else train.rec / *_train.rec and the val ones).

    Keys: train (rec, idx), val (rec, idx) or None, labels (list or None), num_classes,
    num_train, pack_resize (int > 0 or None), pack_interpolation.  Raises DataError.
    """
    if not os.path.isdir(data_dir):
        raise DataError(f"--data_url {data_dir} is not a folder; pass the folder that holds "
                        f"train.rec and train.idx (made by jobs.data.im2rec)")
    train = named_rec(data_dir, train_file, "train_file") if train_file else find_rec(data_dir, "train")
    if train is None:
        raise DataError(f"no train.rec (or *_train.rec) in --data_url {data_dir}; create it "
                        f"with: python -m jobs.data.im2rec IMAGE_ROOT {data_dir}")
    if os.path.getsize(train[0]) == 0:
        raise DataError(f"{train[0]} is empty; re-create the data set with jobs.data.im2rec")
    info = {}
    info_path = os.path.join(data_dir, "dataset.json")
    if os.path.isfile(info_path):
        try:
            with open(info_path) as f:
                info = json.load(f)
        except ValueError as e:
            raise DataError(f"{info_path} is not valid JSON ({e}); fix or delete it") from None
    labels = None
    labels_path = os.path.join(data_dir, "labels.txt")
    if os.path.isfile(labels_path):
        with open(labels_path) as f:
            labels = [line.strip() for line in f if line.strip()]
    elif info.get("classes"):
        labels = list(info["classes"])
    num_train = info.get("num_train") or _count_records(*train)
    if num_train < 1:
        raise DataError(f"{train[0]} holds no records; re-create the data set")
    resize = info.get("resize")
    val = named_rec(data_dir, val_file, "val_file") if val_file else find_rec(data_dir, "val")
    return {"train": train, "val": val, "labels": labels,
            "num_classes": len(labels) if labels else info.get("num_classes"),
            "num_train": int(num_train), "pack_resize": int(resize) if resize else None,
            "pack_interpolation": info.get("resize_interpolation", "area/linear")}


def preprocessing(data, image_shape):
    """(resize, interpolation, iterator_resizes) so train, val and inference agree.

    Images packed at a shorter edge >= the image side are used as they are; otherwise
    (size unknown or too small) the iterators resize the shorter edge to the image side
    with inter_method 9 = area when shrinking, cubic when enlarging.
    """
    side = max(image_shape[1:])
    if data["pack_resize"] and data["pack_resize"] >= side:
        return data["pack_resize"], data["pack_interpolation"], False
    return side, "area/cubic", True


def shard_sizes(num_records, num_parts):
    """Records in each part of an ImageRecordIter over an indexed .rec: MXNet's indexed
    splitter gives every part ceil(n / parts) records and the last ones what is left."""
    step = -(-num_records // num_parts)
    return [max(0, min(step, num_records - i * step)) for i in range(num_parts)]


def sync_epoch_size(data, batch_size, num_workers):
    """(batches per epoch, shard sizes) for dist_sync training.

    Every worker must run the same number of batches per epoch (a worker that stops
    pushing leaves the others waiting forever), so the smallest shard sets it: larger
    shards drop a few records per epoch (different ones, as they are shuffled), the
    smallest pads its last batch (round_batch).  Raises DataError.
    """
    rec, idx = data["train"]
    if not idx:
        raise DataError(f"distributed training splits {rec} by its index, but {rec[:-4]}.idx is "
                        f"missing; re-create the data set with jobs.data.im2rec")
    sizes = shard_sizes(_count_records(rec, idx), num_workers)
    if min(sizes) == 0:
        raise DataError(f"{sum(sizes)} training records cannot be split over {num_workers} workers "
                        f"(shards of {sizes} records): use fewer workers or more data")
    return -(-min(sizes) // batch_size), sizes


def make_iters(data, args, kv):
    """(train_iter, val_iter or None) for `data` from describe() and parsed `args`.

    The train iterator is sharded over kvstore workers (num_parts / part_index); only
    rank 0 validates (the weights are the same on every worker, and so are the scores).
    """
    # OMP_NUM_THREADS is this job's share of the machine (e.g. a search trial's): decode with as many
    threads = args.data_nthreads or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    common = dict(data_shape=args.image_shape, batch_size=args.batch_size,
                  preprocess_threads=threads, label_width=1, data_name="data",
                  label_name="softmax_label")
    resize, _, iterator_resizes = preprocessing(data, args.image_shape)
    if iterator_resizes:
        common.update(resize=resize, inter_method=9)
    rec, idx = data["train"]
    train = mx.io.ImageRecordIter(
        path_imgrec=rec, path_imgidx=idx or "", shuffle=True, seed=args.seed,
        rand_crop=args.rand_crop, rand_mirror=args.rand_mirror,
        num_parts=kv.num_workers, part_index=kv.rank, **common)
    val = None
    if data["val"] and kv.rank == 0:
        rec, idx = data["val"]
        val = mx.io.ImageRecordIter(path_imgrec=rec, path_imgidx=idx or "", shuffle=False,
                                    rand_crop=False, rand_mirror=False, **common)
    return train, val
