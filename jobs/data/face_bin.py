"""Verification pair files (insightface ``.bin``: LFW, CFP-FP, AgeDB-30 ...).

Run as::

    python -m jobs.data.face_bin --pairs pairs.txt --root FOLDER --out lfw.bin

Format: ``pickle((bins, issame_list))`` where ``bins`` holds 2N encoded images (pair i
is ``bins[2i], bins[2i+1]``) and ``issame_list`` N booleans.  ``write_bin`` uses pickle
protocol 2 (readable by Python 2 insightface too).  ``load_bin`` reads files written by
Python 3 or Python 2 (``encoding='bytes'`` fallback) holding bytes or numpy uint8 buffers,
and refuses pickles that would construct anything else (a .bin is untrusted input).

pairs.txt: one pair per line, fields separated by tabs (then paths may contain spaces)
or whitespace, paths relative to --root:

* ``pathA pathB 1|0``                   1 = same identity
* LFW ``pairs.txt``: ``name n1 n2`` (same) and ``name1 n1 name2 n2`` (different) with
  images at ``name/name_%04d.jpg``; its header line (``10 300``) is skipped.

Blank lines and lines starting with ``#`` are ignored; pair order is kept (the 10 folds of
the protocol are contiguous slices of it).  Images are stored as they are (bytes of the
file); every one must decode.  Errors print one line and exit with code 2.
"""
import argparse
import io
import os
import pickle
import sys
import tempfile

import cv2
import numpy as np

# What a .bin pickle may construct: Python 3 protocol-2 bytes, numpy buffers and bools.
_ALLOWED = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer")}


class FaceBinError(ValueError):
    """Bad pair list, missing/undecodable images or a corrupt .bin (one-line message)."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise FaceBinError(f"refusing to unpickle {module}.{name}: a face .bin holds "
                               f"only encoded images and booleans")
        return super().find_class(module, name)


def write_bin(path, pairs, issame):
    """Write pairs [(bytes_a, bytes_b)] and issame [bool] to `path` atomically.

    Returns {"num_pairs", "num_same"}.  Raises FaceBinError on mismatched lengths or
    empty / non-bytes images.
    """
    pairs, issame = list(pairs), [bool(s) for s in issame]
    if len(pairs) != len(issame) or not pairs:
        raise FaceBinError(f"need one issame flag per pair and at least one pair, got "
                           f"{len(pairs)} pairs and {len(issame)} flags")
    bins = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise FaceBinError(f"pair {i} has {len(pair)} images, expected 2")
        for img in pair:
            if not isinstance(img, (bytes, bytearray)) or not img:
                raise FaceBinError(f"pair {i}: images must be non-empty encoded bytes "
                                   f"(JPEG/PNG), got {type(img).__name__}")
            bins.append(bytes(img))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".face_bin-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump((bins, issame), f, protocol=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return {"num_pairs": len(issame), "num_same": sum(issame)}


def _unpickle(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FaceBinError(f"cannot read {path}: {e.strerror or e}") from None
    for kwargs in ({}, {"encoding": "bytes"}):   # Python 2 str -> bytes on the retry
        try:
            return _SafeUnpickler(io.BytesIO(data), **kwargs).load()
        except UnicodeDecodeError:
            continue
        except FaceBinError:
            raise
        except Exception as e:  # UnpicklingError, EOFError, ValueError ... on corrupt data
            raise FaceBinError(f"{path} is not a face .bin pickle "
                               f"({type(e).__name__}: {e})") from None
    raise FaceBinError(f"{path} could not be decoded as a Python 3 or Python 2 pickle")


def _buffer(item):
    if isinstance(item, (bytes, bytearray)):
        return np.frombuffer(item, np.uint8)
    if isinstance(item, np.ndarray):
        return item.astype(np.uint8, copy=False).reshape(-1)
    if isinstance(item, str):  # Python 2 str unpickled as latin-1 text
        return np.frombuffer(item.encode("latin-1"), np.uint8)
    return None


def load_bin(path, image_size=(112, 112)):
    """Decode a .bin: (images uint8 [2N, H, W, 3] RGB, issame np.bool_ [N]).

    Images of another size are resized to image_size=(H, W).  Raises FaceBinError.
    """
    obj = _unpickle(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise FaceBinError(f"{path}: expected a pickled (bins, issame_list) pair, got "
                           f"{type(obj).__name__}")
    bins, issame = list(obj[0]), np.asarray(obj[1], dtype=np.bool_).reshape(-1)
    if len(bins) != 2 * len(issame) or not len(issame):
        raise FaceBinError(f"{path}: {len(bins)} images for {len(issame)} pairs (need 2 per "
                           f"pair, at least one pair)")
    h, w = image_size
    images = np.empty((len(bins), h, w, 3), dtype=np.uint8)
    for i, item in enumerate(bins):
        buf = _buffer(item)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf is not None and buf.size else None
        if img is None:
            raise FaceBinError(f"{path}: image {i} (pair {i // 2}) cannot be decoded")
        if img.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
            img = cv2.resize(img, (w, h), interpolation=interp)
        images[i] = img[:, :, ::-1]
    return images, issame


def _lfw_path(name, number):
    return f"{name}/{name}_{int(number):04d}.jpg"


def parse_pairs(pairs_file):
    """[(relative path A, relative path B, same, line number)] from a pairs file."""
    try:
        with open(pairs_file) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise FaceBinError(f"cannot read pairs file {pairs_file}: {e.strerror or e}") from None
    out, seen_pair = [], False
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        f = [v.strip() for v in (text.split("\t") if "\t" in text else text.split())]
        f = [v for v in f if v]
        digits = [v.isdigit() for v in f]
        if len(f) == 2 and all(digits) and not seen_pair:
            continue                                # LFW header: folds, pairs per fold
        if len(f) == 3 and digits[1] and digits[2]:
            out.append((_lfw_path(f[0], f[1]), _lfw_path(f[0], f[2]), True, lineno))
        elif len(f) == 4 and digits[1] and digits[3]:
            out.append((_lfw_path(f[0], f[1]), _lfw_path(f[2], f[3]), False, lineno))
        elif len(f) == 3 and f[2] in ("0", "1"):
            out.append((f[0], f[1], f[2] == "1", lineno))
        else:
            raise FaceBinError(f"{pairs_file}:{lineno}: cannot parse {text[:80]!r}; expected "
                               f"'pathA pathB 0|1', 'name n1 n2' or 'name1 n1 name2 n2'")
        seen_pair = True
    if not out:
        raise FaceBinError(f"{pairs_file} lists no pairs")
    return out


def build_bin(pairs_file, root, out):
    """Read the images a pairs file names under `root` and write the .bin `out`."""
    if not os.path.isdir(root):
        raise FaceBinError(f"--root {root} is not a folder; pass the folder the paths in "
                           f"{pairs_file} are relative to")
    pairs, issame, problems = [], [], []
    for a, b, same, lineno in parse_pairs(pairs_file):
        data = []
        for rel in (a, b):
            path = os.path.join(root, rel)
            try:
                with open(path, "rb") as fh:
                    blob = fh.read()
            except OSError as e:
                problems.append(f"line {lineno}: {path}: {e.strerror or e}")
                continue
            if cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR) is None:
                problems.append(f"line {lineno}: {path}: not a decodable image")
                continue
            data.append(blob)
        if len(data) == 2:
            pairs.append(tuple(data))
            issame.append(same)
    if problems:  # dropping a pair would shift the fold structure: refuse instead
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise FaceBinError(f"{len(problems)} image(s) of {pairs_file} unusable: "
                           f"{'; '.join(problems[:3])}{more}")
    return write_bin(out, pairs, issame)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jobs.data.face_bin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", required=True, help="pairs.txt (see the module docstring)")
    parser.add_argument("--root", required=True, help="folder the image paths are relative to")
    parser.add_argument("--out", required=True, help="the .bin file to write")
    args = parser.parse_args(argv)
    try:
        info = build_bin(args.pairs, args.root, args.out)
    except FaceBinError as e:
        print(f"face_bin: error: {e}", file=sys.stderr)
        return 2
    print(f"[face_bin] {info['num_pairs']} pairs ({info['num_same']} same) -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
