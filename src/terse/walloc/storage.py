"""The paper's latent storage: 8-bit latents tiled into an image, saved losslessly (WebP/PNG).

Integer latents + 2**(b-1) become bytes. With latent_dim = 3 n**2 the channels are tiled
into an n x n mosaic in each of the R, G, B planes (the paper's layout); otherwise into a
grayscale mosaic of ceil(sqrt(C))**2 tiles (unused tiles are the zero level). Audio latents
(C, T) are first folded into (C, ceil(T / 256), 256) tiles, as the paper does.
"""

from __future__ import annotations

import io
import math

import numpy as np

from terse.core.errors import FormatError

AUDIO_ROW = 256
FORMATS = {"webp": "WEBP", "png": "PNG"}


def _layout(channels: int) -> tuple[int, int]:
    """-> (planes, n): planes of n x n tiles."""
    n = math.isqrt(channels // 3)
    if channels % 3 == 0 and 3 * n * n == channels:
        return 3, n
    return 1, math.ceil(math.sqrt(channels))


def _tiles(latent: np.ndarray) -> np.ndarray:
    """(C, H, W) or (C, T) -> (C, h, w) tiles."""
    if latent.ndim == 3:
        return latent
    c, t = latent.shape
    rows = max(1, -(-t // AUDIO_ROW))
    out = np.zeros((c, rows * AUDIO_ROW), dtype=latent.dtype)
    out[:, :t] = latent
    return out.reshape(c, rows, AUDIO_ROW)


def latent_to_image_bytes(latent: np.ndarray, bits: int, fmt: str) -> bytes:
    from PIL import Image

    offset = 2 ** (bits - 1)
    tiles = _tiles(np.asarray(latent, dtype=np.int64) + offset)  # (C, h, w) in [1, 255]
    c, h, w = tiles.shape
    planes, n = _layout(c)
    padded = np.full((planes * n * n, h, w), offset, dtype=np.uint8)
    padded[:c] = tiles
    mosaic = padded.reshape(planes, n, n, h, w).transpose(1, 3, 2, 4, 0).reshape(n * h, n * w, planes)
    image = Image.fromarray(mosaic[..., 0] if planes == 1 else mosaic, mode="L" if planes == 1 else "RGB")
    buffer = io.BytesIO()
    if fmt == "webp":
        image.save(buffer, format="WEBP", lossless=True, quality=100, method=6)
    else:
        image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def image_bytes_to_latent(data: bytes, shape: tuple[int, ...], bits: int) -> np.ndarray:
    """Inverse of :func:`latent_to_image_bytes` for a latent of ``shape`` ((C, H, W) or (C, T))."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mosaic = np.asarray(image)
    except Exception as exc:  # Pillow raises many types on bad data
        raise FormatError(f"corrupted payload: cannot decode the latent image ({exc})") from None
    c = shape[0]
    if len(shape) == 3:
        h, w = shape[1], shape[2]
    else:
        h, w = max(1, -(-shape[1] // AUDIO_ROW)), AUDIO_ROW
    planes, n = _layout(c)
    if mosaic.ndim == 2:
        mosaic = mosaic[..., None]
    elif planes == 1 and mosaic.ndim == 3:  # WebP has no grayscale: it decodes to RGB with R = G = B
        mosaic = mosaic[..., :1]
    if mosaic.shape != (n * h, n * w, planes):
        raise FormatError(f"corrupted payload: latent image is {mosaic.shape}, expected {(n * h, n * w, planes)}")
    tiles = mosaic.reshape(n, h, n, w, planes).transpose(4, 0, 2, 1, 3).reshape(planes * n * n, h, w)[:c]
    latent = tiles.astype(np.int64) - 2 ** (bits - 1)
    if len(shape) == 2:
        latent = latent.reshape(c, -1)[:, : shape[1]]
    return latent
