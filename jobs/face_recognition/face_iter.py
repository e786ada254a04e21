"""Training batches from a face .rec (``FaceRec`` of jobs/data/face_rec_reader.py).

``FaceBatches(rec, batch_size, mode, ...).epoch(n)`` yields one epoch of n (default
``len(batches)``) batches ``(data, label)``: data float32 N x 3 x H x W RGB pixels 0..255
(the networks normalise in-graph, like insightface's FaceImageIter), label float32 N.

* ``mode="random"``: every image once per epoch in a new random order; the last batch is
  filled up from the next permutation, so every batch is full.
* ``mode="pk"``: identity-balanced batches for triplet mining (MassFace sampling): walk a
  shuffled list of identities (reshuffled when used up) and take min(K, images left in the
  identity, room left in the batch) random images of each, next to each other, each
  identity at most once per batch while there are enough; identities with a single image
  only serve as negatives.  ``batch_size`` should be P * K.

Epoch size = ceil(images / batch_size).  With ``rand_mirror`` each image is flipped
left-right with probability 1/2.  Images of another size than ``image_size`` are resized.
Batches are decoded in a background thread (OpenCV releases the GIL), at most two ahead.
Decoding errors raise ``FaceDataError`` naming the record.
"""
import math
import queue
import threading

import cv2
import numpy as np


class FaceDataError(ValueError):
    """A record that cannot be decoded (one-line message)."""


def decode(payload, image_size, where=""):
    """RGB uint8 H x W x 3 image of JPEG/PNG bytes, resized to image_size=(H, W)."""
    img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR) if payload else None
    if img is None:
        raise FaceDataError(f"{where}: not a decodable image; rebuild the .rec")
    h, w = image_size
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h
                         else cv2.INTER_LINEAR)
    return img[:, :, ::-1]


class FaceBatches:
    """Source of (data, label) numpy batches; see the module docstring."""

    def __init__(self, rec, batch_size, mode="random", images_per_identity=5,
                 image_size=None, rand_mirror=True, seed=0):
        if mode not in ("random", "pk"):
            raise ValueError(f"mode must be 'random' or 'pk', got {mode!r}")
        self.rec, self.batch_size, self.mode = rec, batch_size, mode
        self.k = images_per_identity
        self.image_size = tuple(image_size or rec.image_size)
        self.rand_mirror = rand_mirror
        self.rng = np.random.default_rng(seed)
        self.groups = [(ident, list(keys)) for ident, keys in rec.identities if keys]
        self.keys = [k for _, keys in self.groups for k in keys]
        if not self.keys:
            raise FaceDataError(f"{rec.data_dir}: the data set holds no images")
        if mode == "pk" and not any(len(keys) > 1 for _, keys in self.groups):
            raise FaceDataError(f"{rec.data_dir}: triplet batches need identities with at "
                                f"least 2 images")
        self._pending = np.empty(0, dtype=np.int64)  # random mode: rest of the permutation
        self._order = []                              # pk mode: identities still to visit

    def __len__(self):
        return max(1, math.ceil(len(self.keys) / self.batch_size))

    def _random_keys(self):
        while len(self._pending) < self.batch_size:
            self._pending = np.concatenate([self._pending, self.rng.permutation(self.keys)])
        keys, self._pending = self._pending[:self.batch_size], self._pending[self.batch_size:]
        return keys.tolist()

    def _pk_keys(self):
        keys, used, deferred = [], set(), []
        while len(keys) < self.batch_size:
            if not self._order:
                self._order = self.rng.permutation(len(self.groups)).tolist()
            group = self._order.pop()
            if group in used and len(used) < len(self.groups):
                deferred.append(group)  # already in this batch (a reshuffle brought it back)
                continue
            used.add(group)
            members = self.groups[group][1]
            take = min(self.k, len(members), self.batch_size - len(keys))
            keys.extend(self.rng.choice(members, take, replace=False).tolist())
        self._order.extend(deferred)  # first in line for the next batch
        return keys

    def _load(self, keys):
        h, w = self.image_size
        data = np.empty((len(keys), 3, h, w), dtype=np.float32)
        label = np.empty(len(keys), dtype=np.float32)
        flips = self.rng.random(len(keys)) < 0.5 if self.rand_mirror else np.zeros(len(keys), bool)
        for i, key in enumerate(keys):
            label[i], payload = self.rec.read(int(key))
            img = decode(payload, self.image_size, f"record {key} of {self.rec.data_dir}")
            if flips[i]:
                img = img[:, ::-1]
            data[i] = img.transpose(2, 0, 1)
        return data, label

    def batch(self):
        """One batch, decoded in the calling thread."""
        return self._load(self._random_keys() if self.mode == "random" else self._pk_keys())

    def epoch(self, num_batches=None):
        """Generator of one epoch (``num_batches``, default len(self)); decoding runs in a
        thread ahead of the consumer, which is stopped when the generator is closed."""
        count = num_batches or len(self)
        q = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for _ in range(count):
                    if not put(self.batch()):
                        return
            except Exception as e:  # handed to the consumer, which re-raises it
                put(e)

        worker = threading.Thread(target=produce, name="face-batches", daemon=True)
        worker.start()
        try:
            for _ in range(count):
                item = q.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()
