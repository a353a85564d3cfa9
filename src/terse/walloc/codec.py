"""WaLLoC codec objects, model artifacts and the ``.wlc`` file format.

A ``.wlc`` file is a terse container (see :mod:`terse.core.container`) whose JSON header
holds the format name and version, the model (shipped name + id = sha256 prefix of its
weights), the modality, the original shape (image H x W) or length and sample rate (audio),
the padded size, the latent shape, the storage method and the CRC32 of the integer
latents, checked after decoding. One payload chunk follows. Storage methods:

* ``parallel`` (format 3, the default for image codecs that have the tables): the
  integer-exact hierarchical context model of :mod:`terse.walloc.parallel_context`, stored
  as a second artifact in the codec's ``parallel/`` subfolder (its id is in the header);
* ``context``: the wavefront MLP / linear context model stored with the codec (the default
  for audio; image files made before format 3);
* ``webp`` / ``png``: the paper's lossless latent image.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terse.core.artifacts import load_artifact, load_config_artifact, model_id, read_manifest, resolve_model_folder, save_artifact
from terse.core.container import expect_eof, read_chunk, read_header, write_chunk, write_header
from terse.core.errors import ArtifactError, ConfigError, DataError, FormatError, ModelMismatchError
from terse.core.memory import keep_freed_memory
from terse.nn.wavelets import crop_to, pad_to_multiple
from terse.walloc.context_models import context_model
from terse.walloc.entropy_model import ContextModel
from terse.walloc.linear_context import LinearContextModel
from terse.walloc.model import WallocConfig, WallocNet
from terse.walloc.parallel_context import ParallelContextModel
from terse.walloc.storage import FORMATS, image_bytes_to_latent, latent_to_image_bytes

logger = logging.getLogger(__name__)

KIND = "terse.walloc.codec"
FORMAT = "walloc"
FORMAT_VERSION = 3
# 2: the image codecs' entropy tables became the MLP context model (new model ids). A version-1
# file still decodes when its model id matches (the stereo codec is unchanged); one made by a
# since-refitted model is refused by the model-id check with a note about its version.
# 3: the ``parallel`` storage (header ``context_id``); files of the other storages are still
# written as version 2, which older releases read.
READABLE_VERSIONS = (1, 2, 3)
STORAGE_METHODS = ("parallel", "context", "webp", "png")
PARALLEL_KIND = "terse.walloc.parallel-context"
PARALLEL_SUBFOLDER = "parallel"
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
DEFAULT_MODELS = {"image": "walloc-rgb-16x", "audio": "walloc-stereo-5x"}
MAX_PIXELS = 1 << 28


@dataclass
class Decoded:
    """A decoded signal: ``image`` (H, W, 3) uint8, or ``audio`` (channels, length) float32 + rate."""

    modality: str
    data: np.ndarray
    sample_rate: int = 0


class WallocCodec:
    """A loaded codec: the network, its entropy tables and its identity.

    ``forward`` (on :attr:`net`) is the differentiable training pass; :meth:`compress` /
    :meth:`decompress` produce and consume real ``.wlc`` bytes.
    """

    def __init__(self, net: WallocNet, tables: dict[str, torch.Tensor], model_id: str, name: str,
                 info: dict[str, Any] | None = None, folder: Path | None = None) -> None:
        self.net = net.eval()
        self.config: WallocConfig = net.config
        self.tables = tables
        self.model_id = model_id
        self.name = name
        self.info = info or {}
        self.folder = folder
        self._context: ContextModel | LinearContextModel | None = None
        self._parallel: tuple[ParallelContextModel, str] | None = None
        self._earlier_parallel: dict[str, ParallelContextModel] = {}

    @property
    def reads_model_ids(self) -> tuple[str, ...]:
        """Ids of other codecs whose files this one decodes: they share its encoder and entropy
        tables (a decoder trained further or distilled), so their latents are this codec's."""
        return tuple(self.info.get("reads_model_ids", ()))

    @property
    def parallel_folder(self) -> Path | None:
        """``<codec>/parallel`` when this codec has parallel context tables there."""
        folder = self.folder / PARALLEL_SUBFOLDER if self.folder is not None else None
        return folder if folder is not None and (folder / "manifest.json").is_file() else None

    @property
    def default_storage(self) -> str:
        """``parallel`` where this image codec has those tables, else ``context``."""
        return "parallel" if self.parallel_folder and self.config.modality == "image" else "context"

    @property
    def parallel(self) -> tuple[ParallelContextModel, str]:
        """The parallel context model from :attr:`parallel_folder` and its artifact id."""
        if self._parallel is None:
            folder = self.parallel_folder
            if folder is None:
                raise ArtifactError(f"codec {self.name!r} has no parallel context tables; fit them with "
                                    f"`terse walloc fit-context {self.folder or self.name} --data DIR`")
            self._parallel = self._load_parallel(folder)
        return self._parallel

    def _load_parallel(self, folder: Path) -> tuple[ParallelContextModel, str]:
        _, tables, manifest = load_artifact(folder, PARALLEL_KIND)
        source_id = manifest.get("info", {}).get("source_id")
        if source_id != self.model_id and source_id not in self.reads_model_ids:
            raise ArtifactError(f"{folder} was fitted for another version of {self.name} "
                                f"(id {source_id}, now {self.model_id}); refit it")
        return context_model(tables, self.net.bottleneck.max_int, "image", kind="parallel"), tables_id(manifest)

    @property
    def earlier_parallel_ids(self) -> dict[str, Path]:
        """The earlier parallel table sets this codec still decodes: {id: its ``parallel-<id>`` folder}."""
        folders = sorted(self.folder.glob(PARALLEL_SUBFOLDER + "-*/manifest.json")) if self.folder else []
        return {tables_id(read_manifest(path.parent)): path.parent for path in folders}

    def parallel_reading(self, context_id: str | None) -> ParallelContextModel:
        """The parallel context model that coded a file: the current one, or an earlier table set
        kept in a ``parallel-<id>`` subfolder (refitted tables leave the old ones there, so
        files made with them still decode)."""
        if context_id == self.parallel[1]:
            return self.parallel[0]
        if context_id not in self._earlier_parallel:
            folder = self.earlier_parallel_ids.get(context_id)
            if folder is None:
                raise ModelMismatchError(f"the file was coded with parallel context tables {context_id}; "
                                         f"{self.name!r} has {self.parallel[1]} and no earlier set with that id")
            self._earlier_parallel[context_id] = self._load_parallel(folder)[0]
        return self._earlier_parallel[context_id]

    @property
    def context(self) -> ContextModel | LinearContextModel:
        """The latent context model, built on first use (so a model whose entropy tables are
        missing or outdated still encodes and decodes WebP/PNG storage)."""
        if self._context is None:
            if not self.tables:
                raise FormatError(f"codec {self.name!r} has no wavefront context tables: its files use the "
                                  "parallel storage (or webp / png)")
            self._context = context_model(self.tables, self.net.bottleneck.max_int, self.config.modality)
        return self._context

    # --- signal <-> tensor ------------------------------------------------------------
    def _to_tensor(self, signal: np.ndarray) -> tuple[torch.Tensor, list[int]]:
        cfg = self.config
        if cfg.modality == "image":
            if signal.ndim != 3 or signal.shape[2] != cfg.channels or signal.dtype != np.uint8:
                raise DataError(f"expected an (H, W, {cfg.channels}) uint8 image, got {signal.shape} {signal.dtype}")
            if signal.shape[0] * signal.shape[1] > MAX_PIXELS:
                raise DataError(f"image of {signal.shape[0]}x{signal.shape[1]} pixels is too large")
            # (1, H, W, C) permuted: a dense channels-last tensor, the layout the encoder runs fastest on
            pixels = torch.from_numpy(np.array(signal, copy=True))[None].permute(0, 3, 1, 2)
            x = pixels.float() / 255 - 0.5
            return pad_to_multiple(x, cfg.block, (2, 3))
        if signal.ndim != 2 or signal.shape[0] != cfg.channels:
            got = f"{signal.shape[0]}-channel audio" if signal.ndim == 2 else f"an array of shape {signal.shape}"
            raise DataError(f"got {got}; this codec needs {cfg.channels} channels as a (channels, length) array")
        if signal.shape[1] == 0:
            raise DataError("empty audio")
        x = torch.from_numpy(np.array(signal, dtype=np.float32, copy=True))[None]
        return pad_to_multiple(x, cfg.block, (2,))

    def encode_latent(self, signal: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Signal -> integer latent (C, H', W') or (C, T') int64, and the original sizes."""
        x, sizes = self._to_tensor(signal)
        with torch.no_grad():
            latent = self.net.encode(x)[0]
        return latent.numpy().astype(np.int64), sizes

    def decode_latent(self, latent: np.ndarray, sizes: list[int]) -> np.ndarray:
        with torch.no_grad():
            if self.config.modality == "image":
                pixels = self.net.decode_pixels(torch.from_numpy(latent[None]).float())[0]  # (H, W, C) uint8
                return np.ascontiguousarray(crop_to(pixels, sizes, (0, 1)).numpy())
            x = self.net.decode(torch.from_numpy(latent).float()[None], clamp=False)
        return crop_to(x, sizes, (2,))[0].clamp(-1, 1).numpy()

    # --- bytes ------------------------------------------------------------------------
    def store_latent(self, latent: np.ndarray, storage: str) -> bytes:
        if storage == "parallel":
            return self.parallel[0].encode(latent)
        if storage == "context":
            return self.context.encode(latent)
        if storage in FORMATS:
            return latent_to_image_bytes(latent, self.config.latent_bits, storage)
        raise ConfigError(f"unknown storage method {storage!r}; choose one of {STORAGE_METHODS}")

    def load_latent(self, payload: bytes, shape: tuple[int, ...], storage: str,
                    context_id: str | None = None) -> np.ndarray:
        """``context_id``: the parallel tables that coded the payload (default: the current ones)."""
        if storage == "parallel":
            return self.parallel_reading(context_id or self.parallel[1]).decode(payload, shape)
        if storage == "context":
            return self.context.decode(payload, shape)
        if storage in FORMATS:
            return image_bytes_to_latent(payload, shape, self.config.latent_bits)
        raise FormatError(f"unknown storage method {storage!r} in file")

    def compress(self, signal: np.ndarray, sample_rate: int = 0, storage: str | None = None) -> bytes:
        """Image (H, W, 3) uint8 or audio (channels, length) float in [-1, 1] -> ``.wlc`` bytes.
        ``storage``: one of :data:`STORAGE_METHODS` (default :attr:`default_storage`)."""
        cfg = self.config
        storage = storage or self.default_storage
        if storage not in STORAGE_METHODS:
            raise ConfigError(f"unknown storage method {storage!r}; choose one of {STORAGE_METHODS}")
        if cfg.modality == "audio" and sample_rate != cfg.sample_rate:
            raise DataError(f"sample rate {sample_rate} Hz; this codec needs {cfg.sample_rate} Hz (resample first)")
        latent, sizes = self.encode_latent(signal)
        payload = self.store_latent(latent, storage)
        version = FORMAT_VERSION if storage == "parallel" else 2  # older readers keep reading the rest
        header = {"format": FORMAT, "version": version, "model": self.name, "model_id": self.model_id,
                  "modality": cfg.modality, "size": sizes,
                  "padded": [s * cfg.block for s in latent.shape[1:]], "latent_shape": list(latent.shape),
                  "sample_rate": sample_rate, "storage": storage,
                  "latent_crc32": zlib.crc32(latent.astype("<i2").tobytes())}
        if storage == "parallel":
            header["context_id"] = self.parallel[1]
        out = io.BytesIO()
        write_header(out, header)
        write_chunk(out, {"end": 1}, payload)
        return out.getvalue()

    def decompress(self, blob: bytes) -> Decoded:
        header, payload = read_wlc(blob)
        if header["model_id"] != self.model_id and header["model_id"] not in self.reads_model_ids:
            old = (" (a format-1 file from an older terse, made before this model's entropy tables were refitted; "
                   "decode it with that terse release)") if header.get("version") == 1 else ""
            raise ModelMismatchError(f"the file was made by model {header['model']!r} ({header['model_id']}), "
                                     f"not {self.name!r} ({self.model_id}){old}")
        shape = tuple(header["latent_shape"])
        if len(shape) != (3 if self.config.modality == "image" else 2) or shape[0] != self.config.latent_dim:
            raise FormatError(f"corrupted header: latent shape {shape} does not fit the model")
        if header["storage"] == "parallel" and not isinstance(header.get("context_id"), str):
            raise FormatError("corrupted header: a parallel-coded file without its context_id")
        latent = self.load_latent(payload, shape, header["storage"], header.get("context_id"))
        if zlib.crc32(latent.astype("<i2").tobytes()) != header["latent_crc32"]:
            raise FormatError("corrupted file: decoded latents fail their CRC check")
        data = self.decode_latent(latent, header["size"])
        return Decoded(self.config.modality, data, int(header.get("sample_rate", 0)))


def read_wlc(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Parse and validate a ``.wlc`` file -> (header, payload)."""
    stream = io.BytesIO(blob)
    header = read_header(stream, expected_format=FORMAT)
    if header.get("version") not in READABLE_VERSIONS:
        raise FormatError(f"unsupported walloc format version {header.get('version')} (this terse reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    required = {"model": str, "model_id": str, "modality": str, "size": list, "latent_shape": list,
                "storage": str, "latent_crc32": int}
    for key, kind in required.items():
        if not isinstance(header.get(key), kind):
            raise FormatError(f"corrupted header: missing or invalid {key!r}")
    shape = header["latent_shape"]
    if not all(isinstance(s, int) and 0 < s < 1 << 24 for s in shape) or np.prod(shape) > MAX_PIXELS:
        raise FormatError("corrupted header: implausible latent shape")
    if not all(isinstance(s, int) and s > 0 for s in header["size"]):
        raise FormatError("corrupted header: invalid size")
    if header["storage"] not in STORAGE_METHODS:
        raise FormatError(f"unknown storage method {header['storage']!r} in file")
    meta, payload = read_chunk(stream, header["container"])
    if meta.get("end") != 1:
        raise FormatError("corrupted file: missing end marker")
    expect_eof(stream)
    return header, payload


# --- artifacts --------------------------------------------------------------------------
def save_codec(net: WallocNet, tables: dict[str, torch.Tensor], folder: Path, info: dict[str, Any] | None = None,
               name: str | None = None, half: bool = True) -> str:
    """Save network + entropy tables as an artifact folder; returns the model id.
    ``half`` stores the network weights as fp16 (entropy tables stay fp32)."""
    tensors = {k: (v.half() if half and v.is_floating_point() else v) for k, v in net.state_dict().items()}
    tensors.update(tables)
    info = {**(info or {}), "name": name or Path(folder).name}
    return model_id(save_artifact(folder, KIND, net.config.to_dict(), tensors, info=info))


def save_parallel_tables(codec: WallocCodec, tables: dict[str, torch.Tensor], info: dict[str, Any] | None = None,
                         folder: Path | None = None) -> str:
    """Save parallel context tables as ``<codec folder>/parallel`` (or ``folder``); returns their id.
    Tables already in ``<codec folder>/parallel`` move to ``parallel-<their id>``, so the files
    coded with them still decode."""
    if folder is None and codec.folder is None:
        raise ArtifactError(f"codec {codec.name!r} was not loaded from a folder; say where to save its tables")
    target = Path(folder) if folder is not None else codec.folder / PARALLEL_SUBFOLDER
    new_id = tables_id(_write_replacing(target, tables, {"source": codec.name},
                                        {**(info or {}), "source_id": codec.model_id}, keep_old=True))
    codec._parallel = None
    codec._earlier_parallel.clear()
    return new_id


def _write_replacing(target: Path, tables: dict[str, torch.Tensor], config: dict[str, Any], info: dict[str, Any],
                     keep_old: bool) -> dict[str, Any]:
    """Save a table set as ``target`` via a staging folder (a failed save leaves ``target`` as it
    was); with ``keep_old``, tables already there move to ``parallel-<their id>`` unless they
    are the same set or that folder exists. Returns the new manifest."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    manifest = save_artifact(staging, PARALLEL_KIND, config, tables, info=info)
    if (target / "manifest.json").is_file():
        old_id = tables_id(read_manifest(target))
        earlier = target.with_name(f"{PARALLEL_SUBFOLDER}-{old_id}")
        if keep_old and not earlier.exists() and old_id != tables_id(manifest):
            target.rename(earlier)
        else:
            shutil.rmtree(target)
    staging.rename(target)
    return manifest


def tables_id(manifest: dict[str, Any]) -> str:
    """The id files name a parallel table set by: the sha of its weights, or the id it had before
    :func:`compact_parallel_tables` stored the same integers in narrower types."""
    return str(manifest.get("info", {}).get("context_id") or model_id(manifest))


def compact_parallel_tables(folder: Path) -> str:
    """Store a parallel table set in the narrowest integer types that hold it (the same
    integers, so the same bytes from the coder), answering to the id it had; returns that id."""
    from terse.walloc.parallel_context import _narrowest

    _, tables, manifest = load_artifact(folder, PARALLEL_KIND)
    narrow = {k: v.to(_narrowest(v)) for k, v in tables.items()}
    if any(not torch.equal(narrow[k].to(torch.int64), v.to(torch.int64)) for k, v in tables.items()):
        raise ArtifactError(f"{folder}: tables are not integers that fit 32 bits")
    context_id = tables_id(manifest)
    config = json.loads((Path(folder) / "config.json").read_text())
    _write_replacing(Path(folder), narrow, config, {**manifest.get("info", {}), "context_id": context_id}, keep_old=False)
    return context_id


def resolve_model_path(name_or_path: str | Path) -> Path:
    return resolve_model_folder(name_or_path, PRETRAINED_DIR, "walloc-", "WaLLoC")


@lru_cache(maxsize=8)
def _load_cached(path: str) -> WallocCodec:
    config, tensors, manifest = load_config_artifact(Path(path), KIND, WallocConfig)
    net = WallocNet(config)
    tables = {k: v.float() for k, v in tensors.items() if k.startswith("entropy.")}
    weights = {k: v.float() for k, v in tensors.items() if not k.startswith("entropy.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not match config ({str(exc).splitlines()[0]})") from None
    info = manifest.get("info", {})
    return WallocCodec(net, tables, model_id(manifest), str(info.get("name", Path(path).name)), info, Path(path))


def load_codec(name_or_path: str | Path) -> WallocCodec:
    """Load (and verify) a codec by shipped name (``walloc-rgb-16x``...) or folder; cached.

    >>> import numpy as np
    >>> codec = load_codec("walloc-rgb-16x")
    >>> image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> blob = codec.compress(image)  # .wlc bytes
    >>> out = codec.decompress(blob)
    >>> out.modality, out.data.shape, out.data.dtype
    ('image', (64, 64, 3), dtype('uint8'))

    Loading a codec also keeps freed memory for reuse (:mod:`terse.core.memory`: its calls
    allocate multi-megabyte tensors, which would otherwise be page-faulted afresh each time).
    """
    keep_freed_memory()
    return _load_cached(str(resolve_model_path(name_or_path).resolve()))


def decompress(blob: bytes, model: str | Path | WallocCodec | None = None) -> Decoded:
    """Decode ``.wlc`` bytes; the model is found from the header unless given."""
    if model is None:
        header, _ = read_wlc(blob)
        try:
            model = load_codec(header["model"])
        except ArtifactError as exc:
            raise ModelMismatchError(f"the file needs WaLLoC model {header['model']!r}: {exc}") from None
    codec = model if isinstance(model, WallocCodec) else load_codec(model)
    return codec.decompress(blob)
