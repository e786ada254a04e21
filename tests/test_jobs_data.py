"""Dataset tools: the synthetic image generator and the folder -> RecordIO packer."""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jobs.data import generate_classification as gen
from jobs.data import im2rec as i2r

LST_LINE = re.compile(r"^(\d+)\t(\d+\.\d{6})\t([^\t]+)$")


def _files(root):
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def _read_lst(path):
    rows = []
    with open(path) as f:
        for line in f:
            m = LST_LINE.match(line.rstrip("\n"))
            assert m, f"bad .lst line {line!r}"
            rows.append((int(m.group(1)), float(m.group(2)), m.group(3)))
    return rows


# -- generator -------------------------------------------------------------------------

def test_generator_is_deterministic_and_sizes_vary(tmp_path):
    kw = dict(classes=6, images_per_class=8, min_size=48, max_size=120, progress=False)
    gen.generate(tmp_path / "a", seed=3, **kw)
    gen.generate(tmp_path / "b", seed=3, **kw)
    gen.generate(tmp_path / "c", seed=4, **kw)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(list(gen.PATTERNS[:6]) + [gen.MARKER])
    assert "circle/circle_0007.jpg" in a
    sizes = set()
    for rel, data in a.items():
        if rel.endswith(".jpg"):
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            h, w = img.shape[:2]
            assert 48 <= min(h, w) and max(h, w) <= 120
            sizes.add((w, h))
    assert len(sizes) > 20                      # varied sizes...
    assert any(w != h for w, h in sizes)        # ...and not all square


def test_generator_classes_look_different(tmp_path):
    # Mean images of two classes must differ clearly (not noise around one template).
    gen.generate(tmp_path / "d", classes=2, images_per_class=1, seed=0, progress=False)
    imgs = [cv2.imread(str(next((tmp_path / "d" / n).iterdir())), cv2.IMREAD_GRAYSCALE)
            for n in gen.PATTERNS[:2]]
    assert all(img is not None and img.std() > 10 for img in imgs)


def test_generator_replaces_own_output_but_not_foreign_folders(tmp_path, capsys):
    out = tmp_path / "ds"
    gen.generate(out, classes=2, images_per_class=2, seed=0, progress=False)
    gen.generate(out, classes=3, images_per_class=1, seed=0, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(gen.PATTERNS[:3])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert gen.main([str(foreign), "--classes", "2"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert "not made by this generator" in capsys.readouterr().err


def test_generator_cli_rejects_too_many_classes(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jobs.data.generate_classification",
                           str(tmp_path / "x"), "--classes", str(len(gen.PATTERNS) + 1)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--classes must be between 1 and" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


# -- im2rec ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """3 classes x 12 JPEGs + a PNG, an upper-case .JPG, a corrupt file and a text file."""
    base = tmp_path_factory.mktemp("im2rec")
    root = base / "images"
    gen.generate(root, classes=3, images_per_class=12, seed=1, min_size=40, max_size=80,
                 progress=False)
    img = cv2.imread(str(root / "circle" / "circle_0000.jpg"))
    cv2.imwrite(str(root / "circle" / "extra.png"), img)
    cv2.imwrite(str(root / "square" / "UPPER.JPG"), img)
    (root / "triangle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "triangle" / "readme.txt").write_text("ignored: not an image extension")
    result = i2r.im2rec(root, base / "rec", val_ratio=0.25, test_ratio=0.25, resize=36,
                        quality=90, seed=0, workers=2, progress=False)
    return root, base / "rec", result


def test_im2rec_outputs_and_lst_format(packed):
    root, rec, result = packed
    assert sorted(os.listdir(rec)) == sorted(
        ["train.lst", "train.rec", "train.idx", "val.lst", "val.rec", "val.idx", "test.lst",
         "labels.txt", "dataset.json"])
    classes = sorted(n for n in os.listdir(root) if (root / n).is_dir())
    assert (rec / "labels.txt").read_text().splitlines() == classes
    info = json.loads((rec / "dataset.json").read_text())
    assert info["classes"] == classes and info["num_classes"] == 3
    assert info["resize"] == 36 and info["image_root"] == str(root)
    seen = set()
    for split in ("train", "val", "test"):
        rows = _read_lst(rec / f"{split}.lst")
        assert info[f"num_{split}"] == len(rows)
        for idx, label, rel in rows:
            assert (root / rel).is_file()                     # relative to IMAGE_ROOT
            assert classes[int(label)] == rel.split("/")[0]   # id = sorted folder index
            assert idx not in seen
            seen.add(idx)
    assert len(seen) == 3 * 12 + 2                            # every readable image once


def test_im2rec_skips_and_reports_corrupt_images(packed):
    _, rec, result = packed
    assert [rel for rel, _ in result["skipped"]] == ["triangle/broken.jpg"]
    assert "decodable" in result["skipped"][0][1]
    assert json.loads((rec / "dataset.json").read_text())["num_skipped"] == 1
    listed = "".join((rec / f"{s}.lst").read_text() for s in ("train", "val", "test"))
    assert "broken.jpg" not in listed and "readme.txt" not in listed
    assert "extra.png" in listed and "UPPER.JPG" in listed


def test_im2rec_cli_reports_corrupt_file_on_stderr(tmp_path):
    root = tmp_path / "img"
    gen.generate(root, classes=2, images_per_class=3, seed=0, min_size=32, max_size=40,
                 progress=False)
    (root / "circle" / "bad.png").write_bytes(b"garbage")
    proc = subprocess.run([sys.executable, "-m", "jobs.data.im2rec", str(root),
                           str(tmp_path / "rec"), "--workers", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"skipped .*bad\.png: ", proc.stderr)
    assert "skipped 1 unreadable" in proc.stderr


def test_im2rec_split_is_stratified(packed):
    _, rec, _ = packed
    for split in ("train", "val", "test"):
        labels = [label for _, label, _ in _read_lst(rec / f"{split}.lst")]
        assert set(labels) == {0.0, 1.0, 2.0}, split
    # 12-13 images per class, val/test ratio 0.25 -> 3 each (corrupt one dropped after split)
    per_class = {}
    for _, label, _ in _read_lst(rec / "val.lst"):
        per_class[label] = per_class.get(label, 0) + 1
    assert set(per_class.values()) <= {2, 3}


def test_records_read_back_with_indexed_recordio(packed):
    import mxnet as mx
    _, rec, _ = packed
    for split in ("train", "val"):
        rows = _read_lst(rec / f"{split}.lst")
        reader = mx.recordio.MXIndexedRecordIO(str(rec / f"{split}.idx"),
                                               str(rec / f"{split}.rec"), "r")
        assert reader.keys == [idx for idx, _, _ in rows]     # writer kept list order
        for idx, label, _ in rows:
            header, img = mx.recordio.unpack_img(reader.read_idx(idx))
            assert header.flag == 0 and header.id == idx and header.label == label
            assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) == 36
        reader.close()


def test_test_split_is_listed_but_not_packed(packed):
    import mxnet as mx
    _, rec, _ = packed
    assert not (rec / "test.rec").exists()
    test_ids = {idx for idx, _, _ in _read_lst(rec / "test.lst")}
    for split in ("train", "val"):
        reader = mx.recordio.MXIndexedRecordIO(str(rec / f"{split}.idx"),
                                               str(rec / f"{split}.rec"), "r")
        assert not test_ids & set(reader.keys)
        reader.close()


def test_records_read_with_image_record_iter(packed):
    import mxnet as mx
    _, rec, _ = packed
    rows = _read_lst(rec / "train.lst")
    it = mx.io.ImageRecordIter(path_imgrec=str(rec / "train.rec"), path_imgidx=str(rec / "train.idx"),
                               data_shape=(3, 32, 32), batch_size=4, shuffle=False,
                               preprocess_threads=1)
    labels = []
    for batch in it:
        assert batch.data[0].shape == (4, 3, 32, 32)
        labels += batch.label[0].asnumpy()[:4 - batch.pad].tolist()
    assert labels == [label for _, label, _ in rows]


def test_im2rec_rerun_overwrites_in_place(packed, tmp_path):
    root, _, _ = packed
    out = tmp_path / "rec"
    i2r.im2rec(root, out, val_ratio=0.2, test_ratio=0.0, resize=0, workers=1, progress=False)
    first = json.loads((out / "dataset.json").read_text())
    i2r.im2rec(root, out, val_ratio=0.5, test_ratio=0.0, resize=0, workers=1, progress=False)
    second = json.loads((out / "dataset.json").read_text())
    assert first["num_test"] == 0 and (out / "test.lst").read_text() == ""
    assert second["num_val"] > first["num_val"]
    assert len(_read_lst(out / "val.lst")) == second["num_val"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp folders


def test_im2rec_cli_bad_root_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jobs.data.im2rec", str(tmp_path / "nope"),
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "is not a folder" in proc.stderr


def test_im2rec_refuses_out_dir_inside_image_root(packed):
    root, _, _ = packed
    with pytest.raises(i2r.Im2RecError, match="must not be inside IMAGE_ROOT"):
        i2r.im2rec(root, root / "rec", progress=False)
    assert not (root / "rec").exists()


def test_generator_skips_an_up_to_date_data_set(tmp_path, capsys):
    out = tmp_path / "ds"
    gen.generate(out, classes=2, images_per_class=2, seed=0, progress=False)
    path = out / "circle" / "circle_0000.jpg"
    os.utime(path, (1, 1))
    gen.generate(out, classes=2, images_per_class=2, seed=0)
    assert os.stat(path).st_mtime == 1                      # not rewritten
    assert "up to date" in capsys.readouterr().out
    gen.generate(out, classes=2, images_per_class=2, seed=1, progress=False)
    assert os.stat(path).st_mtime != 1                      # new seed: regenerated


def test_records_equal_mxnet_pack_img(packed):
    """A record is byte-identical to mx.recordio.pack_img of the resized BGR image."""
    import mxnet as mx
    root, rec, _ = packed
    idx, label, rel = _read_lst(rec / "train.lst")[0]
    reader = mx.recordio.MXIndexedRecordIO(str(rec / "train.idx"), str(rec / "train.rec"), "r")
    img = i2r.resize_shorter(cv2.imread(str(root / rel), cv2.IMREAD_COLOR), 36)
    expected = mx.recordio.pack_img(mx.recordio.IRHeader(0, label, idx, 0), img, quality=90,
                                    img_fmt=".jpg")
    assert reader.read_idx(idx) == expected
    reader.close()
