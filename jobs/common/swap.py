"""Publishing a folder built under a temporary name: readers see the old one or the new one,
never a half-written one."""
import os
import shutil
import tempfile
from contextlib import contextmanager


def swap_in(tmp, out_dir):
    """Rename the finished folder ``tmp`` to ``out_dir``, replacing what is there.

    The previous folder is first moved aside (``os.rename`` cannot replace a non-empty
    folder), then deleted; both folders must be on the same file system."""
    old = None
    if os.path.exists(out_dir):
        parent = os.path.dirname(os.path.abspath(out_dir))
        old = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".old-", dir=parent)
        os.rename(out_dir, os.path.join(old, "d"))
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def building(out_dir):
    """A new temporary folder beside ``out_dir`` to fill; when the block ends normally it
    replaces ``out_dir`` whole (``swap_in``), when it raises it is removed."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".tmp-", dir=parent)
    try:
        yield tmp
        swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
