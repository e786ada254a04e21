"""Face data tools: face .rec writer/reader/packer, verification .bin, synthetic faces."""
import json
import os
import pickle
import re
import struct
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from jobs.data import face_bin, face_rec, generate_faces
from jobs.data.face_rec import FaceRec, FaceRecError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LST_LINE = re.compile(r"^(\d+)\t(\d+\.\d{6})\t([^\t]+)$")


def _jpeg(rgb, quality=95):
    return cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                        [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _png(rgb):
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()


def _solid(colour, h=112, w=112):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = colour
    img[: h // 4, : w // 4] = 255 - np.array(colour)   # a corner mark: not flip-symmetric
    return img


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# -- face .rec ---------------------------------------------------------------------------

def test_face_rec_round_trip_through_mxnet_reader(tmp_path):
    exact = _jpeg(_solid((200, 10, 10)))
    identities = [[exact, _png(_solid((10, 200, 10), 60, 90))],
                  [_jpeg(_solid((10, 10, 200), 150, 150)), b"not an image",
                   _jpeg(_solid((90, 90, 0)))],
                  [_png(_solid((0, 120, 240)))]]
    summary = face_rec.write_face_rec(tmp_path, identities, quality=90)
    assert summary["num_classes"] == 3 and summary["num_images"] == 5
    assert summary["skipped"] == [(1, "<12 bytes>", summary["skipped"][0][2])]
    assert (tmp_path / "property").read_text().strip() == "3,112,112"
    assert sorted(os.listdir(tmp_path)) == ["property", "train.idx", "train.rec"]

    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"),
                                        str(tmp_path / "train.rec"), "r")
    header0, payload = mx.recordio.unpack(rec.read_idx(0))
    assert header0.flag == 2 and list(header0.label) == [6, 9] and header0.id2 == 1
    assert payload == b""
    ranges = []
    for key in range(6, 9):                       # insightface FaceImageIter's walk
        header, payload = mx.recordio.unpack(rec.read_idx(key))
        assert header.flag == 2 and payload == b""
        ranges.append(tuple(int(v) for v in header.label))
    assert ranges == [(1, 3), (3, 5), (5, 6)]
    for ident, (start, stop) in enumerate(ranges):
        for key in range(start, stop):
            header, payload = mx.recordio.unpack(rec.read_idx(key))
            assert header.flag == 0 and header.label == float(ident) and header.id == key
            img = mx.image.imdecode(payload).asnumpy()          # RGB
            assert img.shape == (112, 112, 3)
    first = mx.image.imdecode(mx.recordio.unpack(rec.read_idx(1))[1]).asnumpy()
    assert first[60, 60, 0] > 150 and first[60, 60, 2] < 60      # red stays red (RGB)
    assert mx.recordio.unpack(rec.read_idx(1))[1] == exact       # right-size JPEG kept as is
    rec.close()

    with FaceRec(tmp_path) as fr:
        assert fr.num_classes == 3 and fr.image_size == (112, 112) and fr.num_images == 5
        assert fr.identities == [(0, [1, 2]), (1, [3, 4]), (2, [5])]
        assert fr.images_of(1) == [3, 4]
        label, data = fr.read(4)
        assert label == 1 and data[:2] == b"\xff\xd8"


def test_face_rec_reader_accepts_plain_im2rec_records(tmp_path):
    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"),
                                        str(tmp_path / "train.rec"), "w")
    for key, label in enumerate([1, 0, 1, 1]):             # no identity table at key 0
        rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), key, 0),
                                            _jpeg(_solid((label * 200, 0, 0)))))
    rec.close()
    (tmp_path / "property").write_text("2,112,112\n")
    with FaceRec(tmp_path) as fr:
        assert fr.identities == [(0, [1]), (1, [0, 2, 3])]
        assert fr.read(2)[0] == 1


def _broken(tmp_path, case):
    face_rec.write_face_rec(tmp_path, [[_jpeg(_solid((1, 2, 3)))], [_jpeg(_solid((3, 2, 1)))]])
    if case == "no property":
        os.remove(tmp_path / "property")
    elif case == "bad property":
        (tmp_path / "property").write_text("two,112\n")
    elif case == "bad idx":
        (tmp_path / "train.idx").write_text("0\t0\nnot-a-line\n")
    elif case == "no rec":
        os.remove(tmp_path / "train.rec")
    elif case == "class mismatch":
        (tmp_path / "property").write_text("5,112,112\n")
    elif case == "truncated rec":
        with open(tmp_path / "train.rec", "r+b") as f:
            f.truncate(40)


@pytest.mark.parametrize("case, message", [
    ("no property", r"property is missing"), ("bad property", r"property is corrupt"),
    ("bad idx", r"train.idx is corrupt"), ("no rec", r"train.rec is missing"),
    ("class mismatch", r"says 5 classes but the records hold 2"),
    ("truncated rec", r"cannot be read.*corrupt")])
def test_face_rec_reader_reports_broken_folders(tmp_path, case, message):
    _broken(tmp_path, case)
    with pytest.raises(FaceRecError, match=message):
        FaceRec(tmp_path)


def _identity_folder(root):
    """Three identities (sorted: alice, bob, carol), mixed sizes/formats, one corrupt file."""
    rng = np.random.default_rng(0)
    for name, n in (("bob", 6), ("alice", 5), ("carol", 4)):
        os.makedirs(root / name)
        for i in range(n):
            rgb = rng.integers(0, 256, size=(int(rng.integers(60, 200)), 100, 3), dtype=np.uint8)
            data = _png(rgb) if i % 2 else _jpeg(rgb)
            (root / name / f"{name}_{i}.{'png' if i % 2 else 'jpg'}").write_bytes(data)
    (root / "bob" / "bob_9.jpg").write_bytes(b"\xff\xd8garbage")


def test_folder_to_rec_cli(tmp_path):
    src, out = tmp_path / "faces", tmp_path / "packed"
    _identity_folder(src)
    proc = _run("jobs.data.face_rec", "--src", src, "--out", out, "--test-ratio", "0.2",
                "--workers", "2", "--quality", "90")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"skipped .*bob_9\.jpg: not a decodable image", proc.stderr)
    assert "3 identities: 12 images packed, 3 held out" in proc.stderr
    assert (out / "labels.txt").read_text() == "alice\nbob\ncarol\n"
    info = json.loads((out / "dataset.json").read_text())
    assert info["num_classes"] == 3 and info["num_images"] == 12 and info["num_skipped"] == 1
    assert info["image_size"] == [112, 112] and info["num_test"] == 3
    rows = [LST_LINE.match(line).groups() for line in (out / "test.lst").read_text().splitlines()]
    test_paths = {path for _, _, path in rows}
    assert len(rows) == 3 and len({label for _, label, _ in rows}) == 3   # one per identity
    for _, label, path in rows:
        assert os.path.isfile(src / path)
        assert ["alice", "bob", "carol"][int(float(label))] == path.split("/")[0]
    with FaceRec(out) as fr:
        counts = {ident: len(keys) for ident, keys in fr.identities}
        assert counts == {0: 4, 1: 5, 2: 3}        # bob: 7 files - 1 test - the corrupt one
        decoded = [mx.image.imdecode(fr.read(k)[1]).shape for _, ks in fr.identities for k in ks]
    assert set(decoded) == {(112, 112, 3)}
    assert "bob/bob_9.jpg" not in test_paths
    assert not [p for p in os.listdir(out) if p.startswith(".")]     # no temp left behind


def test_face_rec_cli_user_errors(tmp_path):
    proc = _run("jobs.data.face_rec", "--src", tmp_path / "missing", "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert "face_rec: error:" in proc.stderr and "missing is not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert face_rec.main(["--src", str(tmp_path), "--out", str(tmp_path / "in")]) == 2


# -- verification .bin ---------------------------------------------------------------------

def test_bin_round_trip_resizes_and_keeps_rgb(tmp_path):
    red, blue = _solid((220, 0, 0)), _solid((0, 0, 220), 80, 80)
    pairs = [(_jpeg(red), _png(blue)), (_png(red), _jpeg(red))]
    assert face_bin.write_bin(tmp_path / "x.bin", pairs, [False, True]) == \
        {"num_pairs": 2, "num_same": 1}
    images, issame = face_bin.load_bin(tmp_path / "x.bin")
    assert images.shape == (4, 112, 112, 3) and images.dtype == np.uint8
    assert issame.dtype == np.bool_ and issame.tolist() == [False, True]
    assert images[0, 80, 80, 0] > 180 and images[1, 80, 80, 2] > 180  # RGB order, resized
    assert np.array_equal(images[2], red)                              # PNG is lossless
    small, _ = face_bin.load_bin(tmp_path / "x.bin", image_size=(56, 48))
    assert small.shape == (4, 56, 48, 3)


def _py2_pickle(bins, issame):
    """A protocol-2 pickle as Python 2 writes it: images as `str` (BINSTRING opcodes)."""
    out = bytearray(b"\x80\x02](")
    for b in bins:
        out += b"T" + struct.pack("<i", len(b)) + b
    out += b"e](" + b"".join(b"\x88" if s else b"\x89" for s in issame) + b"e\x86."
    return bytes(out)


def test_bin_reads_python2_and_numpy_pickles_and_refuses_code(tmp_path):
    a, b = _jpeg(_solid((10, 200, 10))), _jpeg(_solid((200, 10, 200)))
    py2 = _py2_pickle([a, b, b, b], [False, True])
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(py2)                       # what a plain Python 3 load does
    (tmp_path / "py2.bin").write_bytes(py2)
    images, issame = face_bin.load_bin(tmp_path / "py2.bin")
    assert issame.tolist() == [False, True] and images[0, 60, 60, 1] > 150

    arrays = [np.frombuffer(x, np.uint8) for x in (a, b)]
    (tmp_path / "np.bin").write_bytes(pickle.dumps((arrays, [np.bool_(True)]), protocol=5))
    images, issame = face_bin.load_bin(tmp_path / "np.bin")
    assert images.shape == (2, 112, 112, 3) and issame.tolist() == [True]

    (tmp_path / "evil.bin").write_bytes(pickle.dumps((os.getcwd, [])))
    with pytest.raises(face_bin.FaceBinError, match="refusing to unpickle"):
        face_bin.load_bin(tmp_path / "evil.bin")
    (tmp_path / "junk.bin").write_bytes(b"\x00garbage")
    with pytest.raises(face_bin.FaceBinError, match="not a face .bin pickle"):
        face_bin.load_bin(tmp_path / "junk.bin")


def test_bin_cli_with_lfw_and_plain_pair_lists(tmp_path):
    root = tmp_path / "lfw"
    imgs = {}
    for name, colour in (("Ann_Lee", (200, 0, 0)), ("Bo", (0, 200, 0))):
        os.makedirs(root / name)
        for n in (1, 2):
            imgs[name, n] = _jpeg(_solid(colour))
            (root / name / f"{name}_{n:04d}.jpg").write_bytes(imgs[name, n])
    (tmp_path / "lfw_pairs.txt").write_text("2\t1\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo\t1\n")
    assert face_bin.main(["--pairs", str(tmp_path / "lfw_pairs.txt"), "--root", str(root),
                          "--out", str(tmp_path / "lfw.bin")]) == 0
    with open(tmp_path / "lfw.bin", "rb") as f:
        bins, issame = pickle.load(f)
    assert bins == [imgs["Ann_Lee", 1], imgs["Ann_Lee", 2], imgs["Ann_Lee", 2], imgs["Bo", 1]]
    assert issame == [True, False]
    (tmp_path / "plain.txt").write_text("# comment\nBo/Bo_0001.jpg Bo/Bo_0002.jpg 1\n")
    assert face_bin.main(["--pairs", str(tmp_path / "plain.txt"), "--root", str(root),
                          "--out", str(tmp_path / "plain.bin")]) == 0
    assert face_bin.load_bin(tmp_path / "plain.bin")[1].tolist() == [True]

    (tmp_path / "bad.txt").write_text("Bo/Bo_0001.jpg Bo/Bo_0009.jpg 1\nBo only\n")
    with pytest.raises(face_bin.FaceBinError, match=r"bad.txt:2: cannot parse 'Bo only'"):
        face_bin.build_bin(tmp_path / "bad.txt", root, tmp_path / "bad.bin")
    (tmp_path / "missing.txt").write_text("Bo/Bo_0001.jpg Bo/Bo_0009.jpg 1\n")
    with pytest.raises(face_bin.FaceBinError, match=r"line 1: .*Bo_0009.jpg"):
        face_bin.build_bin(tmp_path / "missing.txt", root, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()


# -- synthetic faces -----------------------------------------------------------------------

SMALL = dict(identities=3, images_per_identity=5, verify_identities=4, pairs=20,
             progress=False)


def _tree(root):
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            if f != "dataset.json":                 # holds the absolute source path
                out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def test_generator_is_deterministic_idempotent_and_disjoint(tmp_path):
    info = generate_faces.generate(tmp_path / "a", seed=3, **SMALL)
    generate_faces.generate(tmp_path / "b", seed=3, **SMALL)
    generate_faces.generate(tmp_path / "c", seed=4, **SMALL)
    a, b, c = (_tree(tmp_path / n) for n in "abc")
    assert a == b and a.keys() == c.keys() and a != c
    assert info["num_classes"] == 3 and info["generator"]["seed"] == 3
    packed = tmp_path / "a" / "packed"
    assert {"train.rec", "train.idx", "property", "labels.txt", "test.lst", "dataset.json",
            "lfw.bin"} <= set(os.listdir(packed))
    train_names = (packed / "labels.txt").read_text().split()
    pairs = [line.split("\t") for line in
             (tmp_path / "a" / "verify" / "pairs.txt").read_text().splitlines()]
    pair_names = {p.split("/")[0] for a_, b_, _ in pairs for p in (a_, b_)}
    assert train_names == ["id_0000", "id_0001", "id_0002"]
    assert pair_names <= {f"vid_{i:04d}" for i in range(4)} and not pair_names & set(train_names)
    flags = [s == "1" for _, _, s in pairs]
    assert sum(flags) == 10 and all(0 < sum(flags[i:i + 2]) for i in range(0, 20, 2))
    images, issame = face_bin.load_bin(packed / "lfw.bin")
    assert images.shape == (40, 112, 112, 3) and issame.tolist() == flags
    with FaceRec(packed) as fr:
        assert fr.num_classes == 3 and fr.num_images == 12     # 15 - 3 held out

    stamp = os.stat(packed / "train.rec").st_mtime_ns
    generate_faces.generate(tmp_path / "a", seed=3, **SMALL)     # same arguments: no-op
    assert os.stat(packed / "train.rec").st_mtime_ns == stamp
    generate_faces.generate(tmp_path / "a", seed=3, **dict(SMALL, pairs=40))
    assert len(face_bin.load_bin(packed / "lfw.bin")[1]) == 40
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_generator_is_hard_for_untrained_baselines(tmp_path):
    generate_faces.generate(tmp_path / "d", identities=2, images_per_identity=10,
                            verify_identities=8, pairs=100, seed=0, progress=False)
    result = generate_faces.baselines(tmp_path / "d" / "packed" / "lfw.bin")
    assert result["random"] < 0.7 and result["raw_pixels"] < 0.7


def test_generator_refuses_foreign_folder_and_bad_arguments(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert generate_faces.main(["--out", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert generate_faces.main(["--out", str(tmp_path / "x"), "--pairs", "7"]) == 2
    err = capsys.readouterr().err
    assert "was not made by this generator" in err and "--pairs must be even" in err
