"""Reader of insightface face RecordIO folders (train.rec, train.idx, property).

Imported through ``jobs.data.face_rec`` (``FaceRec``, ``FaceRecError``); the layout is
described there.  Imports nothing from ``jobs`` so the training job can use a copy of it.
"""
import os
import struct
import tempfile

MAGIC = 0xCED7230A


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


def _scan_index(rec_path):
    """Index the records of rec_path in order (keys 0..n-1) into a temporary .idx file.
    RecordIO: uint32 magic, uint32 (cflag << 29 | length), payload padded to 4 bytes; a
    record starts at cflag 0 (whole) or 1 (first part of a split record)."""
    offsets = []
    with open(rec_path, "rb") as f:
        while True:
            offset, head = f.tell(), f.read(8)
            if not head:
                break
            magic, lrec = struct.unpack("<II", head) if len(head) == 8 else (0, 0)
            if magic != MAGIC:
                raise FaceRecError(f"{rec_path} is not a RecordIO file (no record at byte "
                                   f"{offset}); rebuild it with im2rec or jobs.data.face_rec")
            if lrec >> 29 in (0, 1):
                offsets.append(offset)
            f.seek((lrec & (1 << 29) - 1) + 3 & ~3, os.SEEK_CUR)
    fd, path = tempfile.mkstemp(suffix=".idx")
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{key}\t{offset}\n" for key, offset in enumerate(offsets))
    return path


class FaceRec:
    """Random access to a face .rec folder: identities, labels and JPEG payloads.

    ``FaceRec(data_dir)`` opens ``train.rec``/``train.idx``/``property`` and reads the
    identity table (key 0, flag > 0).  Files without the table (a plain im2rec .rec) are
    accepted: identities are then formed by scanning every record's label.  ``rec_name``
    picks another .rec of the folder (the MXNet notebook's ``celeb_train.rec``); its
    ``.idx`` may be missing (the records are then indexed in order, in a temporary file),
    and so may ``property`` (classes counted, image size read from the first image).  Identity ids
    are positions in the table (equal to the image labels for files this project writes).
    Raises FaceRecError when a file is missing, the property or index is malformed, or the
    table disagrees with ``property``.  Reads block; one handle per process (open it again
    in a worker; pickling reopens the file).  Usable as a context manager.
    """

    def __init__(self, data_dir, rec_name="train.rec"):
        import mxnet as mx
        self._mx = mx
        self.data_dir = data_dir
        rec = os.path.join(data_dir, rec_name)
        idx = os.path.splitext(rec)[0] + ".idx"
        prop = os.path.join(data_dir, "property")
        notebook = rec_name != "train.rec"
        if notebook and not os.path.isfile(prop):
            self.num_classes = self.image_size = None
        else:
            self.num_classes, self.image_size = _read_property(prop)
        for path in (rec, idx) if not notebook else (rec,):
            if not os.path.isfile(path):
                raise FaceRecError(f"{path} is missing; a face .rec folder holds train.rec, "
                                   f"train.idx and property")
        self._tmp_idx = None
        if not os.path.isfile(idx):
            idx = self._tmp_idx = _scan_index(rec)
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
        if self.num_classes is None:
            self.num_classes = max(i for i, _ in self.identities) + 1
            first = mx.image.imdecode(self.read(self.identities[0][1][0])[1])
            self.image_size = tuple(first.shape[:2])
        if len(self.identities) != self.num_classes and not notebook:
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
        if self._tmp_idx:
            os.unlink(self._tmp_idx)
            self._tmp_idx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
