"""Reading and writing the signals WaLLoC codes: 8-bit RGB images and stereo audio.

Unsupported inputs are refused (or converted, with a logged note) with a clear
:class:`~terse.core.errors.DataError`: grayscale and palette images are expanded to RGB,
RGBA is refused unless the alpha channel is fully opaque, 16-bit images are refused (the
codec is 8-bit), mono audio is refused for a stereo codec, a different sample rate is
refused (no silent resampling).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from terse.core.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def modality_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    raise DataError(f"{path}: unsupported file type {suffix!r} (images: {', '.join(IMAGE_SUFFIXES)}; "
                    f"audio: {', '.join(AUDIO_SUFFIXES)})")


def image_to_array(image, name: str = "image") -> np.ndarray:
    """A PIL image -> (H, W, 3) uint8, converting or refusing unsupported modes."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F") or mode.startswith("I;16"):
        raise DataError(f"{name}: {mode} ({'16-bit' if '16' in mode else '32-bit'}) images are not supported; "
                        "WaLLoC codes 8-bit RGB (convert to 8-bit first)")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        if (rgba[..., 3] != 255).any():
            raise DataError(f"{name}: the image has transparency; WaLLoC codes RGB only "
                            "(flatten it onto a background first)")
        logger.warning("%s: dropping a fully opaque alpha channel", name)
        return np.ascontiguousarray(rgba[..., :3])
    if mode != "RGB":
        if mode in ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
            logger.warning("%s: converting %s to RGB", name, mode)
        else:
            raise DataError(f"{name}: unsupported image mode {mode}")
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image_to_array(image, str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """-> (samples (channels, length) float32 in [-1, 1], sample rate)."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (RuntimeError, OSError, ValueError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise DataError(f"{path}: cannot read audio ({exc})") from None
    return np.ascontiguousarray(data.T), int(rate)


def check_audio(samples: np.ndarray, rate: int, channels: int, expected_rate: int, name: str) -> None:
    if samples.shape[0] != channels:
        raise DataError(f"{name}: {samples.shape[0]}-channel audio; this codec needs {channels} channels "
                        f"({'stereo' if channels == 2 else channels}); e.g. duplicate a mono channel first")
    if rate != expected_rate:
        raise DataError(f"{name}: sample rate {rate} Hz; this codec needs {expected_rate} Hz (resample first)")
    if samples.shape[1] == 0:
        raise DataError(f"{name}: empty audio")


def audio_bytes(samples: np.ndarray, rate: int, suffix: str) -> bytes:
    """(channels, length) float -> file bytes (wav: 16-bit PCM, flac, ogg: Vorbis)."""
    import soundfile

    formats = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
    if suffix not in formats:
        raise DataError(f"unsupported audio output type {suffix!r} (use .wav, .flac or .ogg)")
    fmt, subtype = formats[suffix]
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples.T, -1, 1), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()
