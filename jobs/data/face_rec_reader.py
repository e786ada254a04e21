"""Reader of insightface face RecordIO folders (train.rec, train.idx, property).

Imported through ``jobs.data.face_rec`` (``FaceRec``, ``FaceRecError``); the layout is
described there.  Imports nothing from ``jobs`` so the training job can use a copy of it.
"""
import os


class FaceRecError(ValueError):
    """Bad arguments, or a face .rec folder that is missing or corrupt (one-line message)."""


def _read_property(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise FaceRecError(f"{path} is missing: a face .rec folder needs a 'property' file "
                           f"'num_classes,height,width' beside train.rec (build one with "
                           f"python -m jobs.data.face_rec)") from None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1:
        raise FaceRecError(f"{path} is corrupt: expected 'num_classes,height,width' such as "
                           f"'1000,112,112', found {text[:60]!r}")
    return values[0], (values[1], values[2])


class FaceRec:
    """Random access to a face .rec folder: identities, labels and JPEG payloads.

    ``FaceRec(data_dir)`` opens ``train.rec``/``train.idx``/``property`` and reads the
    identity table (key 0, flag > 0).  Files without the table (a plain im2rec .rec) are
    accepted: identities are then formed by scanning every record's label.  Identity ids
    are positions in the table (equal to the image labels for files this project writes).
    Raises FaceRecError when a file is missing, the property or index is malformed, or the
    table disagrees with ``property``.  Reads block; one handle per process (open it again
    in a worker; pickling reopens the file).  Usable as a context manager.
    """

    def __init__(self, data_dir):
        import mxnet as mx
        self._mx = mx
        self.data_dir = data_dir
        self.num_classes, self.image_size = _read_property(os.path.join(data_dir, "property"))
        rec, idx = (os.path.join(data_dir, "train." + ext) for ext in ("rec", "idx"))
        for path in (rec, idx):
            if not os.path.isfile(path):
                raise FaceRecError(f"{path} is missing; a face .rec folder holds train.rec, "
                                   f"train.idx and property")
        try:
            self._record = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
        except (ValueError, IndexError):
            raise FaceRecError(f"{idx} is corrupt: every line must be 'key<TAB>offset'; "
                               f"rebuild the index or the data set") from None
        try:
            self.identities = self._read_identities()
        except BaseException:
            self.close()
            raise
        if len(self.identities) != self.num_classes:
            n = len(self.identities)
            self.close()
            raise FaceRecError(f"{data_dir}: property says {self.num_classes} classes but "
                               f"the records hold {n} identities")
        self._by_id = dict(self.identities)

    def _header(self, key):
        if key not in self._record.idx:
            raise FaceRecError(f"record {key} is not in {self._record.idx_path}; the index "
                               f"and the identity table disagree (corrupt data set)")
        try:
            return self._mx.recordio.unpack(self._record.read_idx(key))
        except Exception as e:  # MXNetError (bad magic), struct.error (short record)
            raise FaceRecError(f"record {key} of {self._record.uri} cannot be read "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                               f"train.rec and train.idx are corrupt or do not match") from None

    def _read_identities(self):
        if not self._record.keys:
            raise FaceRecError(f"{self._record.idx_path} lists no records")
        header0 = self._header(0)[0] if 0 in self._record.idx else None
        if header0 is None or header0.flag == 0:
            groups = {}
            for key in self._record.keys:
                groups.setdefault(self._label(self._header(key)[0]), []).append(key)
            return sorted(groups.items())
        first, end = (int(v) for v in header0.label[:2])
        identities = []
        for key in range(first, end):
            header = self._header(key)[0]
            if header.flag < 2:
                raise FaceRecError(f"identity record {key} of {self._record.uri} has no "
                                   f"(start, end) range; not an insightface face .rec")
            start, stop = (int(v) for v in header.label[:2])
            identities.append((key - first, list(range(start, stop))))
        return identities

    @staticmethod
    def _label(header):
        return int(header.label if header.flag == 0 else header.label[0])

    @property
    def num_images(self):
        return sum(len(keys) for _, keys in self.identities)

    def read(self, idx):
        """(identity label, JPEG bytes) of image record `idx`."""
        header, payload = self._header(idx)
        return self._label(header), payload

    def images_of(self, identity):
        """Record indices of the images of `identity` (KeyError if unknown)."""
        return self._by_id[identity]

    def close(self):
        self._record.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
