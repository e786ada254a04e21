"""Publishing a folder built under a temporary name: readers see the old one or the new one,
never a half-written one."""
import os
import shutil
import tempfile


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
