"""An image folder with one sub-folder per class (or identity): what is in it and how the
packers split it. Standard library only, so the orchestrator's ``plan`` can say what a split
takes from the user's folder without importing OpenCV.
"""
import os
import random

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "val", "test")


class FolderError(ValueError):
    """The folder is not a folder of class sub-folders with images (one-line message)."""


def list_classes(image_root):
    """Sorted class names and [(relative_path, class_id)] in sorted order."""
    if not os.path.isdir(image_root):
        raise FolderError(f"image root {image_root} is not a folder; pass the folder that "
                          f"holds one sub-folder per class")
    classes = sorted(d for d in os.listdir(image_root)
                     if not d.startswith(".") and os.path.isdir(os.path.join(image_root, d)))
    items = []
    for label, name in enumerate(classes):
        for folder, dirs, files in os.walk(os.path.join(image_root, name)):
            dirs.sort()
            for f in sorted(files):
                if f.lower().endswith(EXTENSIONS) and not f.startswith("."):
                    rel = os.path.relpath(os.path.join(folder, f), image_root)
                    items.append((rel.replace(os.sep, "/"), label))
    if len(classes) < 2 or not items:
        raise FolderError(f"{image_root} must hold at least 2 class sub-folders with images "
                          f"({', '.join(EXTENSIONS)}); found {len(classes)} folders, "
                          f"{len(items)} images")
    return classes, items


def split_items(items, val_ratio, test_ratio, seed):
    """{"train"|"val"|"test": [(global_id, rel_path, label)]}, stratified per class."""
    rng = random.Random(seed)
    by_class = {}
    for gid, (rel, label) in enumerate(items):
        by_class.setdefault(label, []).append((gid, rel, label))
    out = {s: [] for s in SPLITS}
    for label in sorted(by_class):
        group = by_class[label]
        rng.shuffle(group)
        n = len(group)
        n_val, n_test = round(n * val_ratio), round(n * test_ratio)
        if n >= 3:  # enough images: every requested split gets at least one
            n_val = max(n_val, 1 if val_ratio > 0 else 0)
            n_test = max(n_test, 1 if test_ratio > 0 else 0)
        n_val = min(n_val, max(n - 1, 0))          # train keeps at least one image
        n_test = min(n_test, max(n - 1 - n_val, 0))
        out["val"] += group[:n_val]
        out["test"] += group[n_val:n_val + n_test]
        out["train"] += group[n_val + n_test:]
    for s in SPLITS:  # mix classes like im2rec's shuffled lists
        rng.shuffle(out[s])
    return out
