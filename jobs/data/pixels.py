"""Decompression bombs: an image's size read from its header, before anything decodes it.
Pillow (imported lazily) reads only the header here; shipped with the jobs that read images."""
import warnings

MAX_PIXELS = 40_000_000  # per image; a 7,300 x 5,500 photo


def too_many_pixels(source):
    """Why an image (a path or a file-like object) must not be decoded, or "": its header
    announces more than MAX_PIXELS (a decompression bomb: a few KB that decode to GBs).
    Pillow reads only the header here."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # DecompressionBombWarning
            with Image.open(source) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        width, height = 2 * Image.MAX_IMAGE_PIXELS + 1, 1
    except Exception:  # not readable by Pillow: OpenCV's decoder reports what is wrong
        return ""
    if width * height <= MAX_PIXELS:
        return ""
    return f"{width} x {height} = {width * height:,} pixels, more than {MAX_PIXELS:,} (not decoded)"
