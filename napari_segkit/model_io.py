"""Model files: one safetensors file with the weights and, in its metadata header, the JSON
needed to rebuild and use the network (config, normalisation, class names, provenance).

Loading never executes code (safetensors holds raw tensors only) and every failure
(missing, truncated, corrupt or incompatible file) raises :class:`ModelFileError`,
a ``ValueError`` whose message says what to do. :func:`load_model_cached` keeps the last
model file read, until the file changes.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .model import UNet, UNetConfig
from .nets import build_network
from .normalization import DEFAULT_NORMALIZATION
from .postprocess import SPLIT_LEVELS

FORMAT_NAME = "napari-segkit-model"
FORMAT_VERSION = 1
DEFAULT_CLASS_NAMES = ["background", "interior", "boundary"]
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "default_nuclei.safetensors"

#: Largest safetensors header read (JSON: tensor names, shapes, offsets and the metadata);
#: napari-segkit's own headers are a few kB.
MAX_HEADER_BYTES = 8 * 2**20
#: Bounds on the network settings a model file may ask for, checked before anything is
#: built: the shipped model is depth 3, width 16; the widest level has width * 2**depth
#: channels.
CONFIG_BOUNDS = {"in_channels": (1, 16), "n_classes": (2, 256), "n_extra": (0, 16),
                 "depth": (1, 8), "width": (1, 256)}
MAX_LEVEL_CHANNELS = 4096
#: Largest network (parameters + buffers) a model file may describe: 100 M values
#: (400 MB as float32); the shipped model has about 0.5 M.
MAX_NETWORK_VALUES = 100_000_000
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1}


class ModelFileError(ValueError):
    """A model file cannot be read or does not fit this version of napari-segkit."""


@dataclass
class SegModel:
    """A network together with everything needed to use it correctly.

    Attributes
    ----------
    net : UNet
    config : UNetConfig
    normalization : dict
        Stored as it is; read with :meth:`napari_segkit.normalization.Normalization.from_dict`.
    class_names : list of str
        One per class logit (the extra "centre" channel is not a class).
    provenance : dict
        Free-form JSON: training data, steps, validation scores, date, version.
    object_diameter : float or None
        Median equivalent diameter (pixels) of the objects the model was trained on;
        ``predict(..., diameter=...)`` zooms images so that their objects match it.
        None for model files written before it was recorded.
    postprocess : dict or None
        Post-processing fitted to annotated images
        (:func:`napari_segkit.postprocess_fit.fit_postprocess`): ``fg_threshold`` and
        ``split`` (the Predict dock's threshold and split level) with the evidence
        (``fitted_f1``, ``default_f1``, ``n_objects``). Prediction of 2-D images uses them
        unless told otherwise; None: the defaults (0.5, level 0).
    """

    net: UNet
    config: UNetConfig
    normalization: dict = field(default_factory=lambda: dict(DEFAULT_NORMALIZATION))
    class_names: list[str] = field(default_factory=lambda: list(DEFAULT_CLASS_NAMES))
    provenance: dict = field(default_factory=dict)
    object_diameter: float | None = None
    postprocess: dict | None = None

    @classmethod
    def new(cls, config: UNetConfig | None = None, **kwargs) -> SegModel:
        """A freshly initialised model."""
        config = config or UNetConfig()
        names = kwargs.pop("class_names", None)
        if names is None:
            names = (
                list(DEFAULT_CLASS_NAMES)
                if config.n_classes == 3
                else ["background"] + [f"class {i}" for i in range(1, config.n_classes)]
            )
        return cls(net=build_network(config), config=config, class_names=names, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


def _version() -> str:
    from . import __version__

    return __version__


def _metadata(model: SegModel) -> dict[str, str]:
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "normalization": model.normalization,
        "class_names": list(model.class_names),
        "provenance": {"segkit_version": _version(), **model.provenance},
    }
    if model.object_diameter is not None:
        meta["object_diameter"] = float(model.object_diameter)
    if model.postprocess is not None:
        meta["postprocess"] = check_postprocess(model.postprocess)
    return {"segkit": json.dumps(meta, default=_json_default)}


def check_postprocess(settings) -> dict:
    """A model's fitted post-processing (see :class:`SegModel`), checked; ValueError when
    it is not a dict with ``fg_threshold`` in (0, 1) and ``split`` in 0..10."""
    if not isinstance(settings, dict):
        raise ValueError(f"post-processing settings must be a dict, got {type(settings).__name__}")
    t, split = settings.get("fg_threshold"), settings.get("split", 0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) < 1.0:
        raise ValueError(f"the fitted probability threshold must lie between 0 and 1, got {t!r}")
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split <= SPLIT_LEVELS:
        raise ValueError(f"the fitted split level must be a whole number 0..{SPLIT_LEVELS}, "
                         f"got {split!r}")
    out = {"fg_threshold": float(t), "split": int(split)}
    for key in ("fitted_f1", "default_f1", "n_objects"):  # the evidence, kept when numeric
        value = settings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = value
    return out


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (Path, datetime.datetime)):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in model metadata")


def save_model(model: SegModel, path: str | os.PathLike, *, half: bool = False) -> Path:
    """Write ``model`` to ``path`` (a ``.safetensors`` file) atomically.

    The file is written next to the target and moved into place with ``os.replace``, so a
    crash or a Stop during saving never leaves a half-written model behind.
    ``half=True`` stores floating-point weights as float16 (half the size; loaded back
    as float32), except a tensor with values beyond float16's range (e.g. a BatchNorm
    running variance above 65,504), which stays float32 rather than become infinite.
    """
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.net.state_dict().items():
        v = v.detach().to("cpu")
        if half and v.is_floating_point():
            h = v.half()
            if torch.equal(torch.isfinite(h), torch.isfinite(v)):
                v = h
        tensors[k] = v.contiguous().clone()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # serialise in memory, then write: the write releases the GIL (safetensors'
        # save_file holds it while it writes), so a GUI thread keeps running meanwhile
        data = save(tensors, metadata=_metadata(model))
        with open(tmp, "wb") as file:
            file.write(data)
        # mkstemp makes the file private (0600); a model file is a normal document
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _fail(path: Path, why: str) -> ModelFileError:
    return ModelFileError(
        f"cannot load model file {str(path)!r}: {why}. Choose a model file saved by "
        "napari-segkit (.safetensors), or train / download it again."
    )


def read_safetensors_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file (tensor entries and ``__metadata__``), read
    without the tensors and checked: at most :data:`MAX_HEADER_BYTES`, every tensor's
    dtype, shape and byte range consistent and inside the file. Raises ModelFileError."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _fail(path, "it is too short to be a safetensors file")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER_BYTES:
            raise _fail(path, f"its header declares {n} bytes, more than the "
                              f"{MAX_HEADER_BYTES} bytes a model file's header may have "
                              "(the file is corrupt or not a model file)")
        if 8 + n > size:
            raise _fail(path, "its header is truncated (the file is incomplete)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"its header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _fail(path, "its header is not a JSON object")
    data_bytes = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        _check_tensor_entry(path, name, entry, data_bytes)
    return header


def _check_tensor_entry(path: Path, name: str, entry: Any, data_bytes: int) -> None:
    ok = isinstance(entry, dict) and entry.get("dtype") in _DTYPE_BYTES
    shape = entry.get("shape") if ok else None
    offsets = entry.get("data_offsets") if ok else None
    ok = ok and isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
    ok = ok and isinstance(offsets, list) and len(offsets) == 2
    ok = ok and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]
    if not ok:
        raise _fail(path, f"the header entry of tensor {name!r} is malformed")
    nbytes = math.prod(shape) * _DTYPE_BYTES[entry["dtype"]]
    if offsets[1] - offsets[0] != nbytes or offsets[1] > data_bytes:
        raise _fail(path, f"tensor {name!r} (shape {tuple(shape)}) does not fit in the file "
                          "(the file is truncated or corrupt)")


def check_config_bounds(config: UNetConfig) -> None:
    """ValueError when ``config`` asks for a network beyond :data:`CONFIG_BOUNDS`."""
    for name, (low, high) in CONFIG_BOUNDS.items():
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"its config asks for {name}={value!r}; napari-segkit builds "
                             f"networks with {name} in {low}..{high}")
    widest = config.width * 2**config.depth
    if widest > MAX_LEVEL_CHANNELS:
        raise ValueError(f"its config (width={config.width}, depth={config.depth}) asks for "
                         f"{widest} channels at the deepest level, more than "
                         f"{MAX_LEVEL_CHANNELS}")


def expected_tensor_shapes(config: UNetConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor the network of ``config`` stores, found by building
    it on torch's "meta" device (no memory for weights is allocated)."""
    check_config_bounds(config)
    with torch.device("meta"):
        net = build_network(config)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    values = sum(math.prod(s) for s in shapes.values())
    if values > MAX_NETWORK_VALUES:
        raise ValueError(f"its config describes a network of {values:,} values, more than "
                         f"{MAX_NETWORK_VALUES:,}")
    return shapes


def _check_tensors(path: Path, header: dict, config: UNetConfig) -> None:
    """Stored tensor names and shapes against those the config implies."""
    try:
        expected = expected_tensor_shapes(config)
    except ValueError as exc:
        raise _fail(path, str(exc)) from exc
    stored = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    unexpected = sorted(set(stored) - set(expected))
    missing = sorted(set(expected) - set(stored))
    wrong = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])
    problems = []
    if missing:
        problems.append(f"missing tensors {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_names(unexpected)}")
    if wrong:
        problems.append("tensors of the wrong shape " + ", ".join(
            f"{k} {stored[k]} (expected {expected[k]})" for k in wrong[:5]))
    if problems:
        raise _fail(path, "its weights do not fit the network its config describes: "
                          + "; ".join(problems))


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> SegModel:
    """Read a model written by :func:`save_model`; the network is in eval mode on ``device``.

    Nothing is built or read before the header has been checked: its size
    (:data:`MAX_HEADER_BYTES`), the config against :data:`CONFIG_BOUNDS` and the stored
    tensors' names and shapes against those the config implies.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "the file does not exist")
    header = read_safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or "segkit" not in metadata:
        raise _fail(path, "it has no napari-segkit metadata (not a napari-segkit model)")
    try:
        meta = json.loads(metadata["segkit"])
    except (TypeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"its metadata is corrupt ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _fail(path, "its metadata is not napari-segkit model metadata")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, f"its format version {version!r} is not a whole number >= 1 (the "
                          "metadata is damaged or was not written by napari-segkit)")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"model file {str(path)!r} has format version {version!r}, this napari-segkit "
            f"reads up to {FORMAT_VERSION}: upgrade napari-segkit to use it"
        )
    try:
        config = UNetConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"its settings do not describe a napari-segkit network ({exc})") from exc
    _check_tensors(path, header, config)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types and OSError
        raise _fail(path, f"it is not a valid safetensors file or it is truncated ({exc})") from exc
    try:
        net = build_network(config)
        ref = net.state_dict()
        tensors = {k: v.to(ref[k].dtype) if k in ref else v for k, v in tensors.items()}
        net.load_state_dict(tensors, strict=True)
        normalization = dict(meta.get("normalization") or DEFAULT_NORMALIZATION)
        class_names = [str(c) for c in meta.get("class_names") or []]
        provenance = dict(meta.get("provenance") or {})
        diameter = meta.get("object_diameter")
        diameter = None if diameter is None else float(diameter)
        postprocess = meta.get("postprocess")
        postprocess = None if postprocess is None else check_postprocess(postprocess)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _fail(path, f"its weights or settings do not fit a napari-segkit UNet ({exc})") from exc
    if len(class_names) != config.n_classes:
        class_names = SegModel.new(config).class_names
    net.to(device).eval()
    return SegModel(net, config, normalization, class_names, provenance, diameter, postprocess)


def fitted_postprocess_of(model) -> dict | None:
    """The fitted post-processing (``SegModel.postprocess``) of a model, a model file or
    ``"default"``, read from the file's header only; None when there is none or the file
    cannot be read (loading it reports why)."""
    if isinstance(model, SegModel):
        return model.postprocess
    path = DEFAULT_MODEL_PATH if str(model) == "default" else Path(model)
    try:
        meta = json.loads(read_safetensors_header(path)["__metadata__"]["segkit"])
        fitted = meta.get("postprocess")
        return None if fitted is None else check_postprocess(fitted)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def load_default_model(device: str | torch.device = "cpu") -> SegModel:
    """The nuclei model shipped with napari-segkit (fluorescence and H&E, 1 channel)."""
    if not DEFAULT_MODEL_PATH.is_file():
        raise ModelFileError(
            f"the default nuclei model is missing ({DEFAULT_MODEL_PATH}); it has not been "
            "trained yet in this checkout: run `python scripts/train_default_model.py`, "
            "or reinstall napari-segkit"
        )
    return load_model(DEFAULT_MODEL_PATH, device=device)


def load_default_model_cached() -> SegModel:
    """The shipped nuclei model through :func:`load_model_cached` (shared: do not modify it)."""
    if not DEFAULT_MODEL_PATH.is_file():
        return load_default_model()  # raises ModelFileError saying what to do
    return load_model_cached(DEFAULT_MODEL_PATH)


def load_model_cached(path: str | os.PathLike) -> SegModel:
    """The model in ``path``, loaded once per process while the file stays the same.

    Keyed by the resolved path, modification time and size, so a model retrained into
    the same file is loaded again. Only the last model is kept. The model is shared by
    every caller: use it, do not train it.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return load_model(path)  # raises ModelFileError saying what is wrong
    return _load_model_version(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1)
def _load_model_version(path: str, mtime_ns: int, size: int) -> SegModel:
    """One version of a model file (``mtime_ns`` and ``size`` only key the cache)."""
    return load_model(path)


def as_model(model: Any) -> Any:
    """A :class:`SegModel` as it is, ``"default"`` (the shipped nuclei model) or a model
    file path loaded through the cache."""
    if isinstance(model, str) and model == "default":
        return load_default_model_cached()
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        return load_model_cached(model)
    return model
