"""Writing model artifacts (torch side): a trained or untrained network -> ``model.pt`` + ONNX +
calibration set + ``artifact.json``, and loading an artifact's weights back into torch.

The reading side (:class:`cosmic_utils.runtime.artifact.ModelArtifact`, checks, constants) is
torch-free and runs in Lambda; everything that needs torch lives here.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmic_utils import config
from cosmic_utils.data import dataset
from cosmic_utils.model import checkpoint
from cosmic_utils.model.astromae import ViTAstro, build_model
from cosmic_utils.model.checkpoint import (
    CheckpointError,
    StateDictMismatchError,
    load_published_checkpoint,
    load_state_dict_file,
)
from cosmic_utils.model.export import EXPORT_RTOL, ExportError, RedshiftPredictor, export_graph
from cosmic_utils.runtime.artifact import (
    CALIBRATION_FILE,
    META_FILE,
    ONNX_FILE,
    ROLE_CALIBRATION,
    ROLE_ONNX,
    ROLE_ONNX_INT8,
    ROLE_STATE_DICT,
    STATE_DICT_FILE,
    ArtifactNotFoundError,
    ModelArtifact,
    read_meta,
    sha256_file,
)
from cosmic_utils.runtime.gating import CALIBRATION_ROWS
from cosmic_utils.runtime.preprocess import Preprocessing, default_preprocessing, identity
from cosmic_utils.runtime.storage import replacing

log = logging.getLogger(__name__)


def load_state_dict(artifact: ModelArtifact) -> dict[str, Any]:
    """The bare state_dict from ``model.pt`` (weights-only load, keys/shapes validated)."""
    return load_state_dict_file(artifact.state_dict_path)


def load_model(artifact: ModelArtifact) -> ViTAstro:
    """``ViTAstro`` with the artifact's weights, in eval mode."""
    return checkpoint.load_model(artifact.state_dict_path)


def predictor(artifact: ModelArtifact) -> RedshiftPredictor:
    """Preprocessing + network as one torch module (eval mode), raw inputs -> ``[B]``."""
    return RedshiftPredictor(load_model(artifact), artifact.preprocessing).eval()


# --------------------------------------------------------------------------- writers
def write_artifact(out_dir: str | os.PathLike[str], state_dict: Mapping[str, Any], preprocessing: Preprocessing, *,
                   name: str | None = None, config: Mapping[str, Any] | None = None,
                   training_data_sha256: str | None = None, metrics: Mapping[str, Any] | None = None,
                   with_onnx: bool = True, onnx_example: tuple[Any, Any] | None = None,
                   extra: Mapping[str, Any] | None = None) -> ModelArtifact:
    """Write ``model.pt`` (+ ``model.onnx`` and calibration set) and ``artifact.json`` into ``out_dir``. Built
    in a sibling folder and moved into place at the end (a crash leaves no half-written artifact; an existing
    ``out_dir`` is replaced). ``onnx_example``: raw ``(image, magnitude)`` to trace and verify on."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        bare = {k.removeprefix("module."): v.detach().cpu().contiguous() for k, v in state_dict.items()}
        torch.save(bare, staging / STATE_DICT_FILE)
        art = ModelArtifact(
            path=staging, name=name or out.name, preprocessing=preprocessing, config=dict(config or {}),
            training_data_sha256=training_data_sha256, metrics=dict(metrics or {}), extra=dict(extra or {}),
        )
        art.add_file(ROLE_STATE_DICT, STATE_DICT_FILE)
        if with_onnx:
            model = build_model()
            model.load_state_dict(bare, strict=True)
            _export(art, model.eval(), onnx_example)
        art.save()
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    art.path = out
    return art


def add_onnx(artifact: ModelArtifact, onnx_example: tuple[Any, Any] | None = None) -> ModelArtifact:
    """Export (or re-export) ``model.onnx`` of an artifact with a state_dict and update artifact.json. An
    existing calibration set keeps its rows (eager predictions recomputed); a listed int8 graph is quantised
    again from the new graph, so no file of the artifact is stale."""
    _export(artifact, load_model(artifact), onnx_example, _existing_calibration(artifact))
    artifact.save()
    if artifact.has(ROLE_ONNX_INT8):
        from cosmic_utils.runtime.onnx_engine import register_int8

        register_int8(artifact.path)
        # register_int8 wrote files.onnx_int8 and onnx_int8.source_sha256: take them, so a later
        # save of this object does not put the old int8 record back
        fresh = ModelArtifact.load(artifact.path, verify=False)
        artifact.files, artifact.extra = fresh.files, fresh.extra
    return artifact


def _export(art: ModelArtifact, model: ViTAstro, example: tuple[Any, Any] | None,
            inputs: tuple[Any, Any, Any] | None = None) -> None:
    """Export :func:`~cosmic_utils.model.export.graph_predictor` into ``art``, add the calibration set, check both."""
    report = export_graph(model, art.preprocessing, art.path / ONNX_FILE, example=example)
    art.add_file(ROLE_ONNX, ONNX_FILE)
    art.extra["onnx_export"] = {k: v for k, v in report.items() if k != "path"}
    add_calibration(art, model=RedshiftPredictor(model, art.preprocessing).eval(), inputs=inputs, save=False)
    check_onnx_on_calibration(art)


def _existing_calibration(artifact: ModelArtifact) -> tuple[Any, Any, Any] | None:
    path = artifact.path / CALIBRATION_FILE
    if not artifact.has(ROLE_CALIBRATION) or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["image"], npz["magnitude"], npz["z_spec"]


def check_onnx_on_calibration(artifact: ModelArtifact, rtol: float = EXPORT_RTOL) -> dict[str, float]:
    """Compare ``model.onnx`` with the eager fp32 predictions on the calibration set (real galaxies, not only the
    trace example): recorded in ``onnx_export`` (not saved here); :class:`ExportError` above ``rtol`` relative."""
    from cosmic_utils.model.export import onnx_predict, parity

    with np.load(artifact.path / CALIBRATION_FILE, allow_pickle=False) as npz:
        image, magnitude, ref = npz["image"], npz["magnitude"], npz["z_fp32"]
    diff, rel = parity(onnx_predict(artifact.path / ONNX_FILE, image, magnitude, batch_size=256), ref)
    if not np.isfinite(diff) or rel > rtol:
        raise ExportError(f"ONNX graph {artifact.path / ONNX_FILE} differs from the eager fp32 model by {diff:.3g} "
                          f"({rel:.3g} relative > {rtol}) on the {len(ref)}-row calibration set")
    out = {"calibration_rows": int(len(ref)), "calibration_max_abs_diff": diff, "calibration_max_rel_diff": rel}
    artifact.extra.setdefault("onnx_export", {}).update(out)
    return out


def add_calibration(artifact: ModelArtifact, rows: int | None = None, model: RedshiftPredictor | None = None,
                    inputs: tuple[Any, Any, Any] | None = None, save: bool = True) -> ModelArtifact:
    """Write the accuracy gate's calibration set into the artifact (``files.calibration``). ``inputs``: raw
    ``(image, magnitude, z_spec)``, default the first ``rows`` (``CALIBRATION_ROWS``) validation galaxies as
    training renders them; ``z_fp32`` from the eager fp32 ``model`` (default the artifact's own) is the
    reference a reduced engine is compared with on whatever CPU it later runs on."""
    source = "given arrays" if inputs is not None else "validation catalogue (first rows, training render seed)"
    if inputs is None:
        inputs = dataset.validation_rows(int(rows or CALIBRATION_ROWS))
    image = np.ascontiguousarray(inputs[0], dtype=np.float32)
    magnitude = np.ascontiguousarray(inputs[1], dtype=np.float64)
    z_spec = np.asarray(inputs[2], dtype=np.float64).reshape(-1)
    net = model if model is not None else predictor(artifact)
    z_fp32 = net.predict_numpy(image, magnitude).astype(np.float64)
    with replacing(artifact.path / CALIBRATION_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, image=image, magnitude=magnitude, z_spec=z_spec, z_fp32=z_fp32)
    artifact.add_file(ROLE_CALIBRATION, CALIBRATION_FILE)
    artifact.extra["calibration"] = {"rows": int(len(image)), "reference": "eager fp32 (torch)",
                                     "source": source}
    if save:
        artifact.save()
    return artifact


def create_untrained_artifact(out_dir: str | os.PathLike[str], seed: int = 0, with_onnx: bool = True) -> ModelArtifact:
    """A complete artifact with seeded random-init weights and the default preprocessing (same seed -> same
    ``model.pt``), for tests; ~1 s without ONNX, ~15-20 s with it: share it in a session-scoped fixture."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model()
    return write_artifact(
        out_dir, model.state_dict(), default_preprocessing(), name=Path(out_dir).name,
        config={"kind": "untrained", "seed": int(seed)}, training_data_sha256=None,
        metrics={}, with_onnx=with_onnx, extra={"trained": False},
    )


def artifact_from_published(checkpoint_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                            trust: bool = False, with_onnx: bool = True) -> ModelArtifact:
    """Wrap the published weights as an artifact with identity preprocessing (raw inputs).
    ``checkpoint_path``: a plain state_dict file (weights-only), or the published pickled checkpoint, which is
    unpickled (restricted) only with ``trust=True`` (``--trust-pickle``), else ``UntrustedPickleError``."""
    source = Path(checkpoint_path)
    if not source.is_file():
        raise FileNotFoundError(f"published checkpoint {source}: file not found")
    try:
        state, kind = load_state_dict_file(source), "state_dict"
    except StateDictMismatchError:
        raise
    except CheckpointError:
        state, kind = load_published_checkpoint(source, trust=trust), "published-pickle"
    return write_artifact(
        out_dir, state, identity(), name=Path(out_dir).name,
        config={"kind": "published", "source": str(source), "source_kind": kind,
                "source_sha256": sha256_file(source)},
        training_data_sha256=None, metrics={}, with_onnx=with_onnx, extra={"trained": True, "published": True},
    )


# --------------------------------------------------------------------------- finding one
#: Where the untrained stand-in lives when no trained model exists (one place for every caller).
UNTRAINED_MODEL_DIR: Path = config.MODELS_DIR / "untrained"


def is_trained(meta: Mapping[str, Any]) -> bool:
    """Whether an artifact.json describes a trained model (not :func:`create_untrained_artifact`)."""
    if meta.get("trained") is False:
        return False
    return (meta.get("config") or {}).get("kind") != "untrained"


def find_model(model_dir: str | os.PathLike[str] | None = None, with_onnx: bool = True,
               allow_untrained: bool = False) -> tuple[Path, bool]:
    """``(artifact folder, trained?)``: ``model_dir`` when given, else ``models/default`` when it holds one.
    Else, only with ``allow_untrained=True``, an untrained stand-in made once in :data:`UNTRAINED_MODEL_DIR`
    (valid timings, invalid accuracy; its records say so); by default :class:`ArtifactNotFoundError` says how
    to train one, so an untrained model is never used silently."""
    if model_dir is not None and str(model_dir) != "":
        folder = Path(model_dir)
        return folder, is_trained(read_meta(folder))
    if (config.DEFAULT_MODEL_DIR / META_FILE).is_file():
        return config.DEFAULT_MODEL_DIR, is_trained(read_meta(config.DEFAULT_MODEL_DIR))
    if not allow_untrained:
        raise ArtifactNotFoundError(
            f"no trained model at {config.DEFAULT_MODEL_DIR}: run notebook 00 or `cosmic model train` first "
            f"(about 2-10 minutes on 2 CPU cores), or name a model (--model DIR / model_dir=...), or ask for an "
            f"untrained stand-in explicitly (allow_untrained=True: speeds only)")
    folder = UNTRAINED_MODEL_DIR
    log.warning("no trained model in %s: using an UNTRAINED artifact (%s)", config.DEFAULT_MODEL_DIR, folder)
    if not (folder / META_FILE).is_file() or (with_onnx and not (folder / ONNX_FILE).is_file()):
        create_untrained_artifact(folder, seed=0, with_onnx=with_onnx)
    return folder, False
