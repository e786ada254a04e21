"""Generate a synthetic Caltech101-style image-classification data set.

Run as::

    python -m jobs.data.generate_classification OUT_DIR --classes 6 \
        --images-per-class 100 --seed 0 [--min-size 96 --max-size 256 --quality 90]

Contract:

* Layout: ``OUT_DIR/<class_name>/<class_name>_<nnnn>.jpg`` (one sub-folder per class,
  ``nnnn`` from 0000) plus ``OUT_DIR/generator.json`` (the parameters used).  Class
  ``k`` is the k-th entry of ``PATTERNS`` (circle, square, triangle, hstripes, cross,
  ring, ...), so ``--classes 6`` always yields the same six classes.
* Every image is a JPEG of random size: width and height are drawn from
  ``[min_size, max_size]`` with the aspect ratio capped at ``MAX_ASPECT`` (like photos),
  showing one pattern near the centre, with random colours, scale, rotation, a noisy
  gradient background and a few faint clutter lines.
* Deterministic: the same arguments give byte-identical files (each image has its own
  random generator seeded by ``(seed, class, index)``).
* Atomic: images are written into a temporary folder next to ``OUT_DIR`` which is then
  renamed into place, so a crash never leaves a half-written data set.  An existing
  ``OUT_DIR`` is replaced only if it is empty or was made by this generator
  (it holds ``generator.json``); if it holds exactly the requested data set nothing
  is rewritten.
* Errors in the arguments print one line and exit with code 2.
"""
import argparse
import json
import math
import os
import sys

import cv2
import numpy as np

from jobs.common.swap import building

# Order matters: "--classes N" takes the first N.  The first six are the most distinct.
PATTERNS = ("circle", "square", "triangle", "hstripes", "cross", "ring",
            "checkerboard", "vstripes", "star", "dots")
MAX_ASPECT = 1.6
MARKER = "generator.json"


class GenerateError(ValueError):
    """Bad arguments or an output folder we must not touch (one-line message)."""


def _image_size(rng, min_size, max_size):
    """(width, height) drawn independently, long side shortened to MAX_ASPECT * short."""
    w, h = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    if max(w, h) > MAX_ASPECT * min(w, h):
        long_side = int(MAX_ASPECT * min(w, h))
        w, h = (long_side, h) if w > h else (w, long_side)
    return w, h


def _colours(rng):
    """Background and foreground RGB colours with enough contrast to see the shape."""
    while True:
        bg, fg = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
        if np.abs(bg - fg).sum() > 180:
            return bg, fg


def _polygon_mask(h, w, points):
    """Anti-aliased 0..1 mask of a filled polygon given as float (x, y) points."""
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(np.asarray(points) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def _regular_points(cx, cy, radii, angle, count):
    """Vertices of a (star-)polygon: `count` points alternating over `radii`, first up."""
    pts = []
    for i in range(count):
        t = angle - math.pi / 2 + 2 * math.pi * i / count
        r = radii[i % len(radii)]
        pts.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return pts


def _pattern_mask(name, rng, h, w):
    """0..1 float mask of pattern `name`, centred near the image centre."""
    short = min(h, w)
    cx = w / 2 + rng.uniform(-0.1, 0.1) * short
    cy = h / 2 + rng.uniform(-0.1, 0.1) * short
    s = rng.uniform(0.26, 0.40) * short            # half-size of the object
    angle = math.radians(rng.uniform(-15, 15))
    if name == "triangle":
        return _polygon_mask(h, w, _regular_points(cx, cy, [1.25 * s], angle, 3))
    if name == "star":
        return _polygon_mask(h, w, _regular_points(cx, cy, [1.2 * s, 0.5 * s], angle, 10))
    # Rotated coordinates (u along the object's x axis, v along its y axis).
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)
    v = -(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)
    r2 = u * u + v * v
    box = (np.abs(u) < 1.15 * s) & (np.abs(v) < 1.15 * s)
    period = s * rng.uniform(0.45, 0.6)              # stripe / cell size
    if name == "circle":
        m = r2 < s * s
    elif name == "ring":
        m = (r2 < (1.1 * s) ** 2) & (r2 > (1.1 * s * rng.uniform(0.5, 0.65)) ** 2)
    elif name == "square":
        m = (np.abs(u) < 0.85 * s) & (np.abs(v) < 0.85 * s)
    elif name == "cross":
        t = s * rng.uniform(0.25, 0.35)
        m = ((np.abs(u) < 1.1 * s) & (np.abs(v) < t)) | ((np.abs(u) < t) & (np.abs(v) < 1.1 * s))
    elif name == "hstripes":
        m = box & (np.floor(v / period) % 2 == 0)
    elif name == "vstripes":
        m = box & (np.floor(u / period) % 2 == 0)
    elif name == "checkerboard":
        m = box & ((np.floor(u / period) + np.floor(v / period)) % 2 == 0)
    elif name == "dots":
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        m = box & (du * du + dv * dv < (0.3 * period) ** 2)
    else:
        raise GenerateError(f"unknown pattern {name!r}")
    # A light blur anti-aliases the hard numpy mask edges.
    return cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.6)


def render(name, rng, min_size=96, max_size=256):
    """One RGB uint8 image of pattern `name` drawn with generator `rng`."""
    w, h = _image_size(rng, min_size, max_size)
    bg, fg = _colours(rng)
    # Background: base colour + a linear gradient + gaussian noise.
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (x * math.cos(direction) + y * math.sin(direction)) / max(h, w)
    img = bg + ramp[..., None] * rng.uniform(-60, 60, size=3).astype(np.float32)
    # Faint clutter lines so the background is not a plain gradient.
    for _ in range(int(rng.integers(0, 4))):
        p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
        p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
        colour = tuple(float(c) for c in np.clip(bg + rng.uniform(-50, 50, 3), 0, 255))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    mask = _pattern_mask(name, rng, h, w)[..., None]
    img = img * (1.0 - mask) + fg * mask
    img += rng.normal(0.0, rng.uniform(4, 16), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _check_args(classes, images_per_class, min_size, max_size, quality):
    if not 1 <= classes <= len(PATTERNS):
        raise GenerateError(f"--classes must be between 1 and {len(PATTERNS)} (the number of "
                            f"patterns implemented: {', '.join(PATTERNS)}), got {classes}")
    if images_per_class < 1:
        raise GenerateError(f"--images-per-class must be >= 1, got {images_per_class}")
    if not 16 <= min_size <= max_size:
        raise GenerateError(f"need 16 <= --min-size <= --max-size, got {min_size}..{max_size}")
    if not 1 <= quality <= 100:
        raise GenerateError(f"--quality must be between 1 and 100, got {quality}")


def _may_replace(out_dir):
    """True if out_dir is absent, empty, or made by this generator."""
    if not os.path.exists(out_dir):
        return True
    if not os.path.isdir(out_dir):
        return False
    return not os.listdir(out_dir) or os.path.isfile(os.path.join(out_dir, MARKER))


def _is_up_to_date(out_dir, params):
    """True if out_dir already holds exactly the data set `params` describes."""
    try:
        with open(os.path.join(out_dir, MARKER)) as f:
            if json.load(f) != params:
                return False
    except (OSError, ValueError):
        return False
    for name in params["class_names"]:
        folder = os.path.join(out_dir, name)
        if not os.path.isdir(folder) or len(os.listdir(folder)) != params["images_per_class"]:
            return False
    return True


def generate(out_dir, classes=6, images_per_class=100, seed=0, min_size=96, max_size=256,
             quality=90, progress=True):
    """Write the data set into `out_dir` (atomically) and return the parameters dict.

    Raises GenerateError on bad arguments or when `out_dir` exists with foreign content.
    """
    _check_args(classes, images_per_class, min_size, max_size, quality)
    out_dir = os.path.abspath(out_dir)
    if not _may_replace(out_dir):
        raise GenerateError(f"{out_dir} exists and was not made by this generator "
                            f"(no {MARKER}); choose another OUT_DIR or remove it")
    names = list(PATTERNS[:classes])
    params = {"classes": classes, "class_names": names, "images_per_class": images_per_class,
              "seed": seed, "min_size": min_size, "max_size": max_size, "quality": quality}
    if _is_up_to_date(out_dir, params):
        if progress:
            print(f"[generate] {out_dir} is up to date ({classes} x {images_per_class} images)")
        return params
    with building(out_dir) as tmp:
        for k, name in enumerate(names):
            os.mkdir(os.path.join(tmp, name))
            for i in range(images_per_class):
                rng = np.random.default_rng([seed, k, i])  # per image: order-independent
                rgb = render(name, rng, min_size, max_size)
                path = os.path.join(tmp, name, f"{name}_{i:04d}.jpg")
                ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise OSError(f"JPEG encoding failed for {path}")
                with open(path, "wb") as f:
                    f.write(buf.tobytes())
            if progress:
                print(f"[generate] class {k + 1}/{classes} {name}: {images_per_class} images",
                      flush=True)
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump(params, f, indent=1)
    if progress:
        print(f"[generate] wrote {classes * images_per_class} images in {classes} classes "
              f"to {out_dir}", flush=True)
    return params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to create (one sub-folder per class)")
    parser.add_argument("--classes", type=int, default=6,
                        help=f"number of classes, at most {len(PATTERNS)} (default 6)")
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-size", type=int, default=96, help="smallest image side (px)")
    parser.add_argument("--max-size", type=int, default=256, help="largest image side (px)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100")
    args = parser.parse_args(argv)
    try:
        generate(args.out_dir, args.classes, args.images_per_class, args.seed,
                 args.min_size, args.max_size, args.quality)
    except GenerateError as e:
        print(f"generate_classification: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
