"""The picture codec of the runtime: decode (formats, limits, EXIF orientation,
reducing decode), resize, and encode.

Serving's ``manipulate_image`` (both backends) and the edge editor read and
write pictures with this code, so they see the same pictures as the exported
SavedModel's in-graph ``manipulate_image`` (``tf.io.decode_image`` +
``tf.image.resize``) wherever a picture is decoded as stored.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from serving.runtime.contract import ContractError

# The formats tf.io.decode_image reads: the SavedModel's manipulate_image and
# these helpers then accept the same pictures.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP")
# Pictures up to 2**27 pixels (134 MP: today's 48-108 MP phone photos) are
# taken; larger ones, and decompression bombs, are refused before decoding.
# Memory while decoding one at the limit: JPEG ~1/64 of the full picture
# (decoded at 1/8 scale; 6 MB for 134 MP), other formats the full picture at
# its stored depth, at most 4 bytes a pixel (512 MB), then reduced.
MAX_IMAGE_PIXELS = 1 << 27
# A reducing decode keeps at least this many times the model's size per side.
REDUCE_MARGIN = 2
EXIF_ORIENTATION = 0x0112
# Written formats, by file extension (csvae edit --out).
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


class ImageError(ContractError):
    """Bytes that are not a readable PNG/JPEG/GIF/BMP picture, or a format that cannot be written."""


def _pil():
    from PIL import Image

    return Image


def _open_picture(data: bytes, height: int, width: int):
    """Encoded picture -> ``(loaded upright PIL image, as_stored, full_scale)``.

    Large pictures are reduced *while decoding*, down to no less than
    ``REDUCE_MARGIN`` times the target size on each side (the final resize
    then still antialiases over several source pixels): JPEG in the decoder
    (``Image.draft``: DCT scaling by 1/2, 1/4 or 1/8, so an 8000x6000 photo
    never exists at full size), other formats after decoding by an integer box
    filter (``Image.reduce``). The EXIF orientation of camera photos is
    applied (``ImageOps.exif_transpose``). ``as_stored``: neither happened, the
    picture is exactly what its bytes hold. ``full_scale``: see ``_to_channels``.
    """
    import warnings

    Image = _pil()
    from PIL import ImageOps

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise ImageError("expected the bytes of a PNG/JPEG/GIF/BMP picture, got nothing")
    try:
        with warnings.catch_warnings():
            # The pixel limit is enforced below, with its own message; Pillow's
            # warning (above ~89 MP) would only print a stray line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageError(f"picture larger than the limit of {MAX_IMAGE_PIXELS} pixels (a decompression bomb?)") from err
    if image.format not in IMAGE_FORMATS:
        raise ImageError(f"{image.format} pictures are not supported; send one of {', '.join(IMAGE_FORMATS)}")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"picture of {image.width}x{image.height} pixels is larger than the limit of {MAX_IMAGE_PIXELS} pixels "
            f"({MAX_IMAGE_PIXELS / 1e6:.0f} MP)"
        )
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation in (5, 6, 7, 8):  # stored rotated by 90°: the target's sides swap in storage
        height, width = width, height
    want_w, want_h = width * REDUCE_MARGIN, height * REDUCE_MARGIN
    as_stored = orientation not in range(2, 9)
    if image.format == "JPEG":
        stored_size = image.size
        image.draft(image.mode, (want_w, want_h))  # picks the strongest DCT scaling that keeps >= want
        as_stored = as_stored and image.size == stored_size
    image.load()
    factor = min(image.width // want_w, image.height // want_h)
    full_scale = None
    if factor >= 2:
        if image.mode in ("1", "P"):
            image = image.convert("RGBA")
        elif image.mode == "I;16" or image.mode.startswith("I;16"):
            image, full_scale = image.convert("I"), 65535.0
        image = image.reduce(factor)
        as_stored = False
    if orientation in range(2, 9):
        image = ImageOps.exif_transpose(image)
    return image, as_stored, full_scale


def decode_picture(data: bytes, image_shape) -> tuple[np.ndarray, bool]:
    """``decode_image``, and whether the picture was decoded as stored (no
    reducing decode, no EXIF rotation): then TensorFlow's ``decode_image`` +
    ``resize`` in the SavedModel's ``manipulate_image`` sees the same picture."""
    Image = _pil()
    height, width, channels = (int(d) for d in image_shape)
    try:
        image, as_stored, full_scale = _open_picture(data, height, width)
        with image:
            pixels = _to_channels(image, channels, full_scale)
    except ImageError:
        raise
    except Image.UnidentifiedImageError as err:
        raise ImageError("not a PNG/JPEG/GIF/BMP picture (unrecognised bytes)") from err
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise ImageError(f"not a readable PNG/JPEG/GIF/BMP picture ({type(err).__name__}: {err})") from err
    if pixels.shape[:2] != (height, width):
        pixels = resize(pixels, height, width)
    return pixels, as_stored


def decode_image(data: bytes, image_shape) -> np.ndarray:
    """Encoded picture -> float32 ``[H, W, C]`` in [0, 1] at the model's ``image_shape``.

    Like the SavedModel's ``manipulate_image``: converted to the model's
    channel count (grey replicated, alpha dropped), resized bilinearly with
    antialiasing (aspect ratio not kept) when its size differs. Grey from
    colour uses ITU-R 601 luma weights. Camera photos are turned upright
    (EXIF orientation), and pictures up to ``MAX_IMAGE_PIXELS`` are taken,
    reduced while decoding so that memory stays bounded (``_open_picture``).

    Raises:
      ImageError: not a PNG/JPEG/GIF/BMP, corrupt, or larger than ``MAX_IMAGE_PIXELS``.
    """
    return decode_picture(data, image_shape)[0]


def _to_channels(image, channels: int, full_scale: float | None = None) -> np.ndarray:
    """A loaded PIL image -> float32 ``[h, w, channels]`` in [0, 1].

    ``full_scale``: the white level of an ``I`` image (65535 for 16-bit pictures
    that were widened to ``I`` to be reduced)."""
    if image.mode.startswith("I"):  # 16/32-bit grey: scaled to [0, 1] (decode_image's uint8 cast scales too)
        raw = np.asarray(image)
        full = full_scale or (65535.0 if image.mode.startswith("I;16") or raw.max(initial=0) > 255 else 255.0)
        grey = np.clip(raw.astype(np.float32) / np.float32(full), 0.0, 1.0)[..., None]
        if channels == 1:
            return grey
        rgb = np.repeat(grey, 3, axis=-1)
        return rgb if channels == 3 else np.concatenate([rgb, np.ones_like(grey)], axis=-1)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ImageError(f"models with {channels} channels cannot take pictures")
    pixels = np.asarray(image.convert(mode), np.float32) / np.float32(255.0)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 ``[h, w, C]`` -> ``[height, width, C]``: bilinear, antialiased
    when shrinking (as ``tf.image.resize(..., antialias=True)``), in float so
    no rounding happens before the model sees the picture."""
    Image = _pil()
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[..., c]), mode="F").resize((width, height), Image.BILINEAR)
        )
        for c in range(pixels.shape[-1])
    ]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0).astype(np.float32)


def encode_png(pixels: np.ndarray) -> bytes:
    """float ``[H, W, C]`` in [0, 1] -> PNG bytes (rounded half to even, like the SavedModel's output)."""
    Image = _pil()
    values = np.round(np.clip(np.asarray(pixels, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    mode = {2: "L"}.get(values.ndim) or {3: "RGB", 4: "RGBA"}[values.shape[-1]]
    buffer = io.BytesIO()
    # zlib level 1: 2-3x faster than the default 6 (1.3 ms -> 0.5 ms for a 64x64
    # edit, a quarter of the model's time on the serving path), files ~25% larger.
    Image.fromarray(values, mode=mode).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def output_format(path) -> str:
    """The Pillow format that ``path``'s extension names (``OUTPUT_FORMATS``); ``ImageError`` otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ImageError(
            f"--out {path}: cannot tell the picture format from {suffix or 'a name without an extension'!r}; "
            f"end it in {', '.join(OUTPUT_FORMATS)}."
        )
    return OUTPUT_FORMATS[suffix]


def encode_image(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """float ``[H, W, C]`` in [0, 1] -> ``fmt`` bytes: ``PNG`` (``encode_png``, lossless),
    ``JPEG`` (quality 95, alpha dropped) or ``WEBP`` (lossless)."""
    if fmt == "PNG":
        return encode_png(pixels)
    Image = _pil()
    values = np.round(np.clip(np.asarray(pixels, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    image = Image.fromarray(values)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("L" if image.mode == "L" else "RGB").save(buffer, format="JPEG", quality=95)
    elif fmt == "WEBP":
        image.save(buffer, format="WEBP", lossless=True)
    else:
        raise ImageError(f"cannot write {fmt} pictures; use one of {', '.join(sorted(set(OUTPUT_FORMATS.values())))}.")
    return buffer.getvalue()
