"""Remote ``--data_url`` / ``--train_url`` (``obs://``, ``s3://``) through ModelArts' moxing.

MXNet reads and writes local files only.  Local paths pass through untouched.  A remote
data_url is copied into a local cache folder before training; a remote train_url is
mirrored: its current content is copied down first (so ``--load_epoch`` / ``--resume``
find their checkpoints), training writes locally, and ``sync_out`` copies the folder
back (train.py calls it after every epoch and at the end).  Needs the ``moxing`` module
(present on ModelArts; the local backend provides a compatible one).
"""
import os
import re
import shutil
import tempfile

REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StorageError(ValueError):
    """A remote URL cannot be used (one-line message)."""


def is_remote(url):
    return bool(REMOTE.match(str(url)))


def _mox():
    try:
        import moxing as mox
    except ImportError:
        raise StorageError("remote --data_url/--train_url need the moxing module (ModelArts); "
                           "pass local folders instead") from None
    return mox


class Workspace:
    """Local folders for data_url and train_url; call close() at the end."""

    def __init__(self, data_url, train_url):
        self.train_url = train_url
        self.cache = None
        if is_remote(data_url) or is_remote(train_url):
            base = "/cache" if os.access("/cache", os.W_OK) else None  # ModelArts' local SSD
            self.cache = tempfile.mkdtemp(prefix="train-cache-", dir=base)
        try:
            self.data_dir = self._fetch(data_url, "data", required=True)
            self.out_dir = self._fetch(train_url, "train_url", required=False)
        except BaseException:
            self.close()
            raise

    def _fetch(self, url, name, required):
        if not is_remote(url):
            return url
        mox = _mox()
        local = os.path.join(self.cache, name)
        if mox.file.exists(url):
            mox.file.copy_parallel(url, local)
        elif required:
            raise StorageError(f"{url} does not exist; upload the data set there first")
        os.makedirs(local, exist_ok=True)
        return local

    def sync_out(self):
        """Copy the local train_url folder to a remote train_url (no-op when local)."""
        if is_remote(self.train_url):
            _mox().file.copy_parallel(self.out_dir, self.train_url)

    def close(self):
        if self.cache:
            shutil.rmtree(self.cache, ignore_errors=True)
