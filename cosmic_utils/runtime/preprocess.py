"""The input preprocessing recorded in a model artifact (numpy implementation, no torch).

Engines receive raw partition arrays and apply the artifact's :class:`Preprocessing`: image
``"none"`` / ``"asinh"`` (``asinh(image / scale_b)``, float32) and magnitudes ``"magnitudes"`` /
``"r_colours"`` (r, u-g, g-r, r-i, i-z), standardised in float64. :class:`cosmic_utils.model.export.Preprocess`
is the same in torch, inside the ONNX graph. Outputs keep the input dtypes. Why asinh and colours:
docs/training.md "Preprocessing".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from cosmic_utils.runtime.metrics import NMAD_FACTOR
from cosmic_utils.runtime.partition import N_BANDS

#: Version of the preprocessing description (bumped when an operation changes meaning).
FORMAT_VERSION: int = 1
IMAGE_TRANSFORMS: tuple[str, ...] = ("none", "asinh")
MAGNITUDE_FEATURES: tuple[str, ...] = ("magnitudes", "r_colours")

#: Rows: r, u-g, g-r, r-i, i-z.
_R_COLOURS = np.array([[0.0, 0.0, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0, 0.0],
                       [0.0, 0.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0, -1.0]], dtype=np.float64)


class PreprocessingError(ValueError):
    """A preprocessing description is invalid (the message names the field)."""


def magnitude_matrix(features: str) -> np.ndarray:
    """The fixed 5x5 float64 matrix ``A`` with ``features = magnitude @ A.T``."""
    if features == "magnitudes":
        return np.eye(N_BANDS, dtype=np.float64)
    if features == "r_colours":
        return _R_COLOURS.copy()
    raise PreprocessingError(f"preprocessing.magnitude_features must be one of {MAGNITUDE_FEATURES}, got {features!r}")


def _five(name: str, values: Any, positive: bool = False) -> tuple[float, ...]:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PreprocessingError(f"preprocessing.{name} must be 5 numbers: {exc}") from exc
    if arr.size != N_BANDS:
        raise PreprocessingError(f"preprocessing.{name} must have 5 values (u,g,r,i,z), got {arr.size}")
    if not np.isfinite(arr).all():
        raise PreprocessingError(f"preprocessing.{name} has non-finite values: {arr.tolist()}")
    if positive and (arr <= 0).any():
        raise PreprocessingError(f"preprocessing.{name} must be positive, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Preprocessing:
    """What an artifact does to raw inputs before the network (see the module docstring)."""

    image_transform: str = "none"
    image_scale: tuple[float, ...] = (1.0,) * N_BANDS
    magnitude_features: str = "magnitudes"
    magnitude_mean: tuple[float, ...] = (0.0,) * N_BANDS
    magnitude_std: tuple[float, ...] = (1.0,) * N_BANDS
    version: int = FORMAT_VERSION
    notes: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise PreprocessingError(
                f"preprocessing.version {self.version} is not supported (this code reads version {FORMAT_VERSION})")
        if self.image_transform not in IMAGE_TRANSFORMS:
            raise PreprocessingError(
                f"preprocessing.image_transform must be one of {IMAGE_TRANSFORMS}, got {self.image_transform!r}")
        magnitude_matrix(self.magnitude_features)  # validates the name
        for name, positive in (("image_scale", True), ("magnitude_mean", False), ("magnitude_std", True)):
            object.__setattr__(self, name, _five(name, getattr(self, name), positive))

    @property
    def is_identity(self) -> bool:
        """True when inputs reach the network unchanged (the published model)."""
        return self.image_is_identity and self.magnitude_is_identity

    @property
    def image_is_identity(self) -> bool:
        return self.image_transform == "none" and all(s == 1.0 for s in self.image_scale)

    @property
    def magnitude_is_identity(self) -> bool:
        return (self.magnitude_features == "magnitudes" and all(m == 0.0 for m in self.magnitude_mean)
                and all(s == 1.0 for s in self.magnitude_std))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` added for readers of artifact.json)."""
        out = asdict(self)
        out.update({k: list(getattr(self, k)) for k in ("image_scale", "magnitude_mean", "magnitude_std")})
        out["kind"] = "identity" if self.is_identity else f"{self.image_transform}+{self.magnitude_features}"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Preprocessing:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` is the identity. Unknown keys raise."""
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise PreprocessingError(f"preprocessing must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known - {"kind"})
        if extra:
            raise PreprocessingError(f"preprocessing has unknown fields {extra}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def image_scale_array(self) -> np.ndarray:
        """``[1, 5, 1, 1]`` float32 scales (the exact values the torch/ONNX graph holds)."""
        return np.asarray(self.image_scale, dtype=np.float32).reshape(1, N_BANDS, 1, 1)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """Raw float32 ``[N,5,32,32]`` flux -> network input (float32)."""
        image = np.asarray(image, dtype=np.float32)
        if self.image_is_identity:
            return image
        x = image / self.image_scale_array()
        if self.image_transform == "asinh":
            x = np.arcsinh(x)
        return x.astype(np.float32, copy=False)

    def apply_magnitude(self, magnitude: np.ndarray) -> np.ndarray:
        """Raw float64 ``[N,5]`` AB magnitudes -> network input (float64)."""
        magnitude = np.asarray(magnitude, dtype=np.float64)
        if self.magnitude_is_identity:
            return magnitude
        feats = magnitude @ magnitude_matrix(self.magnitude_features).T
        return (feats - np.asarray(self.magnitude_mean)) / np.asarray(self.magnitude_std)

    def apply_numpy(self, image: np.ndarray, magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both steps: ``(image float32 [N,5,32,32], magnitude float64 [N,5])`` network inputs."""
        return self.apply_image(image), self.apply_magnitude(magnitude)

    __call__ = apply_numpy


def identity() -> Preprocessing:
    """No preprocessing: the published model, which takes raw flux images and magnitudes."""
    return Preprocessing(notes={"why": "the published pcm-AstroMAE takes raw inputs"})


def default_preprocessing() -> Preprocessing:
    """asinh + r_colours, constants rounded from a fit on the bundled training file (render seed 1)."""
    return Preprocessing(
        image_transform="asinh",
        image_scale=(0.0534, 0.0478, 0.0861, 0.1267, 0.2957),
        magnitude_features="r_colours",
        magnitude_mean=(16.78, 1.5745, 0.7934, 0.3841, 0.2741),
        magnitude_std=(0.7861, 0.3471, 0.2355, 0.0876, 0.0910),
        notes={"source": "rounded fit on data/sdss_mgs/sdss_mgs_train.txt, render seed 1"},
    )


def fit_preprocessing(image: np.ndarray, magnitude: np.ndarray, image_transform: str = "asinh",
                      magnitude_features: str = "r_colours", max_pixels_per_band: int = 2_000_000) -> Preprocessing:
    """Fit the scales on training arrays: per-band pixel NMAD (a deterministic strided subsample
    of at most ``max_pixels_per_band`` pixels), feature mean and population std."""
    image = np.asarray(image, dtype=np.float32)
    magnitude = np.asarray(magnitude, dtype=np.float64)
    if image.ndim != 4 or image.shape[1] != N_BANDS:
        raise PreprocessingError(f"image must be [N, 5, H, W], got {list(image.shape)}")
    if magnitude.ndim != 2 or magnitude.shape[1] != N_BANDS:
        raise PreprocessingError(f"magnitude must be [N, 5], got {list(magnitude.shape)}")
    if len(image) == 0 or len(magnitude) == 0:
        raise PreprocessingError("cannot fit preprocessing on empty arrays")
    scales = []
    for b in range(N_BANDS):
        pixels = image[:, b].reshape(-1)
        pixels = pixels[::max(1, pixels.size // max_pixels_per_band)].astype(np.float64)
        nmad = NMAD_FACTOR * float(np.median(np.abs(pixels - np.median(pixels))))
        scales.append(nmad if nmad > 0 else 1.0)
    feats = magnitude @ magnitude_matrix(magnitude_features).T
    std = feats.std(axis=0)
    std[std == 0] = 1.0
    return Preprocessing(
        image_transform=image_transform,
        image_scale=tuple(scales) if image_transform != "none" else (1.0,) * N_BANDS,
        magnitude_features=magnitude_features,
        magnitude_mean=tuple(feats.mean(axis=0)),
        magnitude_std=tuple(std),
        notes={"fitted_on_samples": int(len(image))},
    )
