"""How an image becomes a model input: the one definition, and its numpy/Pillow twin.

Two steps, both recorded in every checkpoint and ONNX file (``engine.model_meta``):

1. Storage (``Storage``): how an image file became the uint8 tensor the model
   was trained on. Image folders: EXIF orientation applied, converted to RGB,
   bicubic centre crop to a square side (Pillow's ``ImageOps.fit``). Array
   datasets (CIFAR, Fashion-MNIST, digits) have none: their images are used as
   given.
2. Input (``Preprocess``): uint8 (C, H, W) -> float32 (3, S, S): /255; one
   channel (grey data) repeated to three; resized to S x S, bilinear with
   half-pixel centres, antialiased when either side shrinks (per axis: a
   shrinking axis gets the widened triangle filter, a growing one plain
   bilinear); (x - mean) / std per channel.

``engine.transforms`` runs step 2 in torch for training and export. This
module runs both steps with numpy and Pillow: the image-folder decoder calls
``store``, and ``predict`` calls ``image_input``. Pillow resizes mode-F
(float32) images with the same algorithm torch's ``antialias=True`` copies,
and with plain bilinear when an axis grows, so one Pillow call reproduces
every case; tests/test_preprocess.py pins the two twins together.
Nothing here imports torch (``predict`` must not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

INTERPOLATIONS = ("bilinear",)
# "shrink": antialias when the height or the width shrinks (torch then filters per axis)
ANTIALIAS_RULES = ("shrink",)
FITS = ("center-crop",)
_FIT_WORDS = {"center-crop": "centre crop (aspect kept, the long side cut evenly)"}
RESAMPLES = ("bicubic",)
MODES = ("RGB",)


def antialias(height: int, width: int, size: int, rule: str = "shrink") -> bool:
    """Whether resizing (height, width) to (size, size) antialiases under ``rule``."""
    if rule not in ANTIALIAS_RULES:
        raise ValueError(f"unknown antialias rule {rule!r} (known: {', '.join(ANTIALIAS_RULES)})")
    return height > size or width > size


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not supported (supported: {', '.join(map(str, allowed))})")


@dataclass(frozen=True)
class Storage:
    """How an image file became a stored training image (image folders)."""

    size: int  # side of the square stored image
    fit: str = "center-crop"  # aspect kept, the longer side cropped evenly (ImageOps.fit, centering 0.5)
    resample: str = "bicubic"
    exif: bool = True  # camera orientation (EXIF tag 274) applied first
    mode: str = "RGB"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"storage size must be a positive integer, got {self.size!r}")
        if not isinstance(self.exif, bool):
            raise ValueError(f"storage exif must be true or false, got {self.exif!r}")
        _one_of("storage fit", self.fit, FITS)
        _one_of("storage resample", self.resample, RESAMPLES)
        _one_of("storage mode", self.mode, MODES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Storage:
        if not isinstance(values, Mapping):
            raise ValueError(f"storage must be an object or null, got {values!r}")
        unknown = sorted(set(values) - {"size", "fit", "resample", "exif", "mode"})
        if unknown:
            raise ValueError(f"storage has unknown key(s) {', '.join(unknown)}")
        if "size" not in values:
            raise ValueError("storage lacks size")
        return cls(**values)

    def describe(self) -> str:
        steps = (["EXIF orientation applied"] if self.exif else []) + [
            f"converted to {self.mode}",
            f"{self.resample} {_FIT_WORDS[self.fit]} to {self.size}x{self.size} (Pillow ImageOps.fit)",
        ]
        return ", ".join(steps)


@dataclass(frozen=True)
class Preprocess:
    """Everything that turns an image into the model's input; see the module docstring."""

    image_size: int
    mean: tuple[float, float, float]  # 0-1 scale
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    antialias: str = "shrink"
    grey: bool = False  # trained on one-channel data: files are read as grey ("L"), repeated to 3 channels
    storage: Storage | None = None  # None: images are used as given (array datasets)

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"{name} must have 3 values, got {list(value)}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {list(self.std)}")
        _one_of("interpolation", self.interpolation, INTERPOLATIONS)
        _one_of("antialias rule", self.antialias, ANTIALIAS_RULES)

    def describe(self) -> str:
        """The recipe in words, for the ONNX file (a deployer without this code reads it)."""
        storage = (f"storage: {self.storage.describe()}; " if self.storage is not None
                   else "storage: none, the image is used as given; ")
        return (
            f"{storage}then as uint8 {'grey (L), repeated to 3 channels' if self.grey else 'RGB'}; /255; "
            f"resize to {self.image_size}x{self.image_size} unless already that size, {self.interpolation}, "
            "half-pixel centres (align_corners=False), antialiased when the height or the width shrinks "
            "(per axis, Pillow's filter = torch antialias=True); (x - mean) / std per channel; NCHW float32; "
            "output: logits (softmax for probabilities)"
        )


# --- the numpy/Pillow twin ---------------------------------------------------------

_RESAMPLE = {"bicubic": "BICUBIC"}


def store(image: Image.Image, storage: Storage) -> np.ndarray:
    """Step 1: a decoded image file -> the stored uint8 (C, S, S) image (what training saw)."""
    from PIL import Image, ImageOps

    if storage.exif:
        image = ImageOps.exif_transpose(image)
    image = image.convert(storage.mode)
    method = getattr(Image.Resampling, _RESAMPLE[storage.resample])
    image = ImageOps.fit(image, (storage.size, storage.size), method=method)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _resize(channel: np.ndarray, size: int) -> np.ndarray:
    """float32 (H, W) in [0, 1] -> (size, size): Pillow in floating point (mode F); see the module docstring."""
    from PIL import Image

    if channel.shape == (size, size):
        return channel
    resized = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def input_array(x: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Step 2: uint8 (C, H, W), C in {1, 3} -> float32 (3, S, S), as ``engine.transforms.preprocess``."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] not in (1, 3) or x.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (C, H, W) image with C 1 or 3, got {x.dtype} {x.shape}")
    pixels = x.astype(np.float32) / np.float32(255.0)
    # Resizing is per channel, so a grey image is resized once and then repeated.
    resized = np.stack([_resize(c, spec.image_size) for c in pixels])
    if len(resized) == 1:
        resized = np.repeat(resized, 3, axis=0)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    return ((resized - mean) / std).astype(np.float32)


def image_pixels(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """Step 1 for a file given to ``predict``: the stored uint8 (C, H, W) image training would have seen."""
    if spec.storage is not None:
        return store(image, spec.storage)
    pixels = np.asarray(image.convert("L" if spec.grey else "RGB"), dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def image_input(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """Both steps: a decoded image file -> the model's float32 (3, S, S) input."""
    return input_array(image_pixels(image, spec), spec)
