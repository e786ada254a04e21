"""Synthetic face-like images: stable identity traits, per-image nuisance variation.

``identity(rng)`` draws the traits of one person (face outline, skin tone, eye / brow /
nose / mouth geometry and colours, hair style and colour, ears, optional glasses, beard
and mole).  ``render(traits, rng, size)`` draws one RGB uint8 photo of that person with
its own expression, pose (roll, yaw, scale, shift), background, lighting (gain, colour
cast, directional light, gamma), occasional occluder, blur and noise.  Only the traits
identify a person: a raw-pixel comparison sees mostly nuisance, a trained network can
learn the geometry.  Drawing is done on a 112 px canonical frame (insightface crop:
eyes near y=51, mouth near y=92) and warped to ``size``.
"""
import math

import cv2
import numpy as np

CANON = 112
SKIN = np.array([[236, 204, 180], [226, 178, 144], [198, 146, 106], [150, 102, 70],
                 [100, 68, 48]], np.float32)
HAIR = np.array([[20, 16, 14], [60, 40, 26], [110, 74, 42], [200, 160, 96], [150, 60, 30],
                 [150, 150, 150], [230, 228, 220]], np.float32)
IRIS = np.array([[70, 45, 25], [30, 20, 15], [70, 110, 160], [80, 120, 70], [110, 110, 115]],
                np.float32)


def _palette(rng, table, jitter):
    t = rng.uniform(0, len(table) - 1)
    i = min(int(t), len(table) - 2)
    colour = table[i] + (t - i) * (table[i + 1] - table[i])
    return np.clip(colour + rng.uniform(-jitter, jitter, 3), 0, 255)


def identity(rng):
    """Traits of one synthetic person (a dict of floats, colours and flags)."""
    u = rng.uniform
    skin = _palette(rng, SKIN, 12)
    return {
        "skin": skin, "face_w": u(33, 44), "face_h": u(44, 55), "jaw": u(0.55, 1.0),
        "eye_y": u(45, 56), "eye_dx": u(14, 21), "eye_w": u(5, 9), "eye_r": u(0.35, 0.7),
        "eye_tilt": u(-12, 12), "iris": IRIS[rng.integers(len(IRIS))] + u(-15, 15, 3),
        "brow_gap": u(5, 11), "brow_t": u(1.2, 4.0), "brow_tilt": u(-18, 18),
        "brow_len": u(0.9, 1.6),
        "nose_len": u(12, 22), "nose_w": u(3.5, 10), "mouth_gap": u(7, 14),
        "mouth_w": u(8, 17), "lip_t": u(1.2, 4.0), "smile": u(-3, 4),
        "lip": np.clip(skin * u(0.55, 0.8) + [u(10, 45), -10, -5], 0, 255),
        "hair": _palette(rng, HAIR, 15), "hair_style": int(rng.integers(4)),
        "hairline": u(14, 34), "part": u(-1, 1), "ear": u(5, 11),
        "glasses": bool(u() < 0.2), "glasses_round": bool(u() < 0.5),
        "frame": _palette(rng, HAIR, 30), "beard": bool(u() < 0.2),
        "moustache": bool(u() < 0.2),
        "mole": (u(-0.6, 0.6), u(-0.2, 0.7), u(1, 2.5)) if u() < 0.4 else None,
    }


def _pt(x, y):
    return int(round(x * 16)), int(round(y * 16))  # 4 fractional bits for shift=4


def _ellipse(img, c, axes, angle, colour, thickness=-1, arc=(0, 360)):
    axes = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
    cv2.ellipse(img, _pt(*c), axes, angle, arc[0], arc[1], tuple(float(v) for v in colour),
                thickness, cv2.LINE_AA, 4)


def _poly(img, pts, colour, closed=True, thickness=-1):
    pts = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)
    colour = tuple(float(v) for v in colour)
    if thickness < 0:
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, 4)
    else:
        cv2.polylines(img, [pts], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, 4)


def _face_outline(t, cx, cy, yaw):
    """Points of the face contour: round skull, jaw narrowing by t['jaw']."""
    pts = []
    for k in range(48):
        a = 2 * math.pi * k / 48
        x, y = math.cos(a), math.sin(a)
        w = t["face_w"] * (1 - 0.12 * abs(yaw))
        if y > 0:  # lower half: narrow towards the chin
            x *= 1 - (1 - t["jaw"]) * y ** 1.5
        pts.append((cx + w * x, cy + t["face_h"] * y))
    return pts


def _draw_face(t, rng):
    """Face layer (uint8 RGB) and its alpha mask on the canonical frame."""
    img = np.zeros((CANON, CANON, 3), np.uint8)
    mask = np.zeros((CANON, CANON), np.uint8)
    yaw = rng.uniform(-0.3, 0.3)                       # turning shifts inner features
    cx, cy, shift = 56.0, 60.0, yaw * 9
    skin, hair = t["skin"], t["hair"]
    for layer, colour in ((img, None), (mask, 255)):
        def c(col):
            return (colour,) if colour is not None else col
        if t["hair_style"] == 2:                        # long hair behind the head
            _ellipse(layer, (cx, cy + 10), (t["face_w"] + 9, t["face_h"] + 8), 0, c(hair))
        _poly(layer, [(cx - 13, cy + 30), (cx + 13, cy + 30), (cx + 15, 112), (cx - 15, 112)],
              c(skin * 0.9))                            # neck
        for side in (-1, 1):
            ex = cx + side * (t["face_w"] * (1 - 0.12 * abs(yaw)) - 1) - shift * 0.3
            _ellipse(layer, (ex, t["eye_y"] + 6), (t["ear"] * 0.55, t["ear"]), 0, c(skin * 0.93))
        _poly(layer, _face_outline(t, cx, cy, yaw), c(skin))
        if t["hair_style"] != 0:                       # cap of hair down to the hairline
            top = cy - t["face_h"] - 5
            _ellipse(layer, (cx + t["part"] * 3, t["hairline"]),
                     (t["face_w"] + 3, t["hairline"] - top), 0, c(hair), -1, (180, 360))
    if t["hair_style"] == 3:                           # fringe falling to one side
        _poly(img, [(cx - 25, t["hairline"]), (cx + 25 * t["part"], t["hairline"] + 12),
                    (cx + 25, t["hairline"])], hair)
    # Per-image expression: smile, eye openness, raised or lowered brows.
    smile = t["smile"] + rng.uniform(-1.5, 1.5)
    openness = rng.uniform(0.55, 1.1)
    brow_raise = rng.uniform(-1.5, 1.5)
    fx = cx + shift
    for side in (-1, 1):
        ex, ey = fx + side * t["eye_dx"], t["eye_y"]
        tilt = side * t["eye_tilt"]
        ew, eh = t["eye_w"], max(0.8, t["eye_w"] * t["eye_r"] * openness)
        _ellipse(img, (ex, ey), (ew, eh), tilt, (235, 235, 232))
        _ellipse(img, (ex, ey), (min(eh, ew * 0.5), min(eh, ew * 0.5)), 0, t["iris"])
        _ellipse(img, (ex, ey), (min(eh, ew * 0.2), min(eh, ew * 0.2)), 0, (10, 10, 10))
        _ellipse(img, (ex, ey), (ew, eh), tilt, skin * 0.6, 1)
        by = ey - t["brow_gap"] - brow_raise
        half = ew * t["brow_len"]
        dy = math.tan(math.radians(side * t["brow_tilt"])) * half
        _poly(img, [(ex - half, by + dy), (ex + half, by - dy)], t["hair"] * 0.8, False,
              t["brow_t"])
    tip = t["eye_y"] + t["nose_len"]
    _poly(img, [(fx - 1, t["eye_y"] + 3), (fx - t["nose_w"] * 0.4 + yaw * 3, tip),
                (fx + t["nose_w"] * 0.5, tip)], skin * 0.75, False, 1.5)
    for side in (-1, 1):
        _ellipse(img, (fx + side * t["nose_w"] * 0.35, tip - 0.5), (1.3, 0.9), 0, skin * 0.45)
    my, mw = tip + t["mouth_gap"], t["mouth_w"]
    mouth = [(fx + mw * s, my - smile * (1 - s * s)) for s in np.linspace(-1, 1, 9)]
    _poly(img, mouth, t["lip"], False, t["lip_t"])
    if t["moustache"]:
        _poly(img, [(fx - mw * 0.9, my - 2.5), (fx, my - 5.5), (fx + mw * 0.9, my - 2.5)],
              t["hair"], False, 3)
    if t["beard"]:
        _ellipse(img, (cx, cy + t["face_h"] * 0.72), (t["face_w"] * 0.6, t["face_h"] * 0.25),
                 0, t["hair"], -1, (0, 180))
        _poly(img, mouth, t["lip"], False, t["lip_t"])
    if t["mole"]:
        mx, my2, r = t["mole"]
        _ellipse(img, (fx + mx * t["face_w"], cy + my2 * t["face_h"] * 0.6), (r, r), 0,
                 skin * 0.4)
    if t["glasses"]:
        for side in (-1, 1):
            ex = fx + side * t["eye_dx"]
            if t["glasses_round"]:
                _ellipse(img, (ex, t["eye_y"]), (t["eye_w"] + 4, t["eye_w"] + 2), 0,
                         t["frame"], 1)
            else:
                w2, h2 = t["eye_w"] + 4, t["eye_w"] + 1.5
                _poly(img, [(ex - w2, t["eye_y"] - h2), (ex + w2, t["eye_y"] - h2),
                            (ex + w2, t["eye_y"] + h2), (ex - w2, t["eye_y"] + h2)],
                      t["frame"], True, 1)
        _poly(img, [(fx - t["eye_dx"] + t["eye_w"] + 4, t["eye_y"]),
                    (fx + t["eye_dx"] - t["eye_w"] - 4, t["eye_y"])], t["frame"], False, 1)
    return img, mask


def _background(rng, size):
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    a = rng.uniform(0, 2 * math.pi)
    base = rng.uniform(0, 255, 3).astype(np.float32)
    ramp = (x * math.cos(a) + y * math.sin(a))[..., None]
    img = base + ramp * rng.uniform(-90, 90, 3).astype(np.float32)
    for _ in range(int(rng.integers(0, 5))):          # clutter: blobs and bars
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        p = tuple(int(v) for v in rng.integers(0, [w, h]))
        if rng.uniform() < 0.5:
            cv2.circle(img, p, int(rng.integers(4, max(5, w // 4))), colour, -1, cv2.LINE_AA)
        else:
            q = tuple(int(v) for v in rng.integers(0, [w, h]))
            cv2.line(img, p, q, colour, int(rng.integers(2, 8)), cv2.LINE_AA)
    return img


def render(traits, rng, size=(112, 112)):
    """One RGB uint8 image [H, W, 3] of the person `traits`, nuisance drawn from `rng`."""
    h, w = size
    face, mask = _draw_face(traits, rng)
    angle = rng.uniform(-15, 15)
    scale = rng.uniform(0.86, 1.12) * w / CANON
    m = cv2.getRotationMatrix2D((CANON / 2, CANON / 2), angle, scale)
    m[:, 2] += [(w - CANON) / 2 + rng.uniform(-7, 7) * w / CANON,
                (h - CANON) / 2 + rng.uniform(-7, 7) * h / CANON]
    face = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)[..., None]
    img = _background(rng, size) * (1 - alpha / 255) + face * (alpha / 255)
    # Lighting: gain, colour cast, a directional ramp, gamma.
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w) - 0.5
    a = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0, 0.9) * (x * math.cos(a) + y * math.sin(a))
    img *= light[..., None] * rng.uniform(0.55, 1.3) * rng.uniform(0.82, 1.18, 3)
    img = 255 * (np.clip(img, 0, 255) / 255) ** rng.uniform(0.75, 1.35)
    if rng.uniform() < 0.2:                             # occluder (hand, mask, sticker)
        x0, y0 = rng.integers(0, [w - w // 4, h - h // 4])
        ow, oh = rng.integers([w // 6, h // 6], [w // 2.5, h // 2.5])
        img[y0:y0 + oh, x0:x0 + ow] = rng.uniform(0, 255, 3)
    sigma = rng.uniform(0, 1.6)
    if sigma > 0.4:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)
