"""Train pcm-AstroMAE on the bundled real SDSS galaxies (rendered cutouts), on the CPU.

The encoder (random: no MAE weights exist here) and the CNN convolutions stay frozen; their
outputs are computed once per image and the heads (10,364,897 parameters, no BatchNorm or
dropout) train on the cache with a dz Huber loss, AdamW and a cosine schedule, fully seeded.
:func:`train_default` reuses ``config.DEFAULT_MODEL_DIR`` while its recorded config and
training-data hash match. Reasoning and measurements: docs/training.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmic_utils import config
from cosmic_utils.data import catalog, dataset
from cosmic_utils.data.dataset import render_catalog
from cosmic_utils.data.evaluation import knn_baseline
from cosmic_utils.data.render import RENDERER_VERSION
from cosmic_utils.model.artifacts import add_onnx, write_artifact
from cosmic_utils.model.astromae import ViTAstro, build_model, freeze_transformer
from cosmic_utils.model.export import RedshiftPredictor
from cosmic_utils.progress import progress as progress_bar
from cosmic_utils.runtime.artifact import ArtifactError, ModelArtifact, sha256_file
from cosmic_utils.runtime.metrics import redshift_metrics
from cosmic_utils.runtime.preprocess import Preprocessing, fit_preprocessing

log = logging.getLogger(__name__)

#: Render seed of the training cutouts.
TRAIN_RENDER_SEED: int = 1
#: Render seed of the validation cutouts (the reported metrics; also `cosmic predict`'s default,
#: and the seed `cosmic data prepare` uses by default).
VALID_RENDER_SEED: int = dataset.VALID_RENDER_SEED
CNN_HEAD_START: int = 10  # vis_inception[10:] = Linear, ReLU, Linear (trained)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (recorded in the artifact; equal configs -> cache hit)."""

    name: str = "default"
    seed: int = 0
    render_seed: int = TRAIN_RENDER_SEED
    valid_render_seed: int = VALID_RENDER_SEED
    holdout_fraction: float = 0.1
    max_train_rows: int | None = None
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    huber_delta: float = 0.01
    mag_jitter: float = 0.5  # jitter magnitudes by N(0, mag_jitter * e_band); 0 disables
    early_stopping_patience: int = 0  # 0: run every epoch of the cosine schedule, keep the best holdout epoch
    image_transform: str = "asinh"
    magnitude_features: str = "r_colours"
    feature_batch: int = 256
    eval_rows: int | None = None  # validation rows scored at the end (None: all 2,500)
    threads: int | None = None
    renderer_version: str = RENDERER_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cache_key(self) -> dict[str, Any]:
        """The settings that change the trained weights (``threads`` does not)."""
        return {k: v for k, v in self.to_dict().items() if k != "threads"}


#: Named configurations for `cosmic model train --config NAME`.
CONFIGS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    # tests: a few hundred galaxies, two epochs, no validation cost beyond a subset
    "quick": TrainConfig(name="quick", max_train_rows=256, epochs=3, batch_size=64, warmup_epochs=0,
                         early_stopping_patience=0, eval_rows=128),
}


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    artifact: ModelArtifact
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- data
def training_data_sha256(train_path: str | os.PathLike[str] | None = None, render_seed: int = TRAIN_RENDER_SEED) -> str:
    """Hash of what the model is trained on: the catalogue file, the render seed and renderer version."""
    digest = hashlib.sha256()
    digest.update(sha256_file(train_path or config.TRAIN_CATALOG).encode())
    digest.update(f"|render_seed={render_seed}|renderer={RENDERER_VERSION}".encode())
    return digest.hexdigest()


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation split of ``range(n)`` into (fit rows, holdout rows)."""
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(n)
    n_hold = int(round(n * fraction))
    if fraction > 0:
        n_hold = max(1, min(n - 1, n_hold))
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


# --------------------------------------------------------------------------- cached branches
@torch.inference_mode()
def cached_features(model: ViTAstro, image: np.ndarray, batch_size: int = 256,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frozen-part outputs for preprocessed images (eval mode): ``(pooled [N,192], cnn [N,192])``, the inputs
    of ``fc_norm`` (mean patch token after the 12 blocks) and of ``vis_inception[10]`` (flattened CNN)."""
    was_training = model.training
    model.eval()
    pooled = np.empty((len(image), model.cls_token.shape[-1]), dtype=np.float32)
    cnn = np.empty((len(image), model.inception_model.vis_inception[CNN_HEAD_START].in_features), dtype=np.float32)
    convs = model.inception_model.vis_inception[:CNN_HEAD_START]
    try:
        for start in progress_bar(range(0, len(image), batch_size), desc="frozen features", disable=not progress,
                          leave=False):
            x = torch.from_numpy(np.ascontiguousarray(image[start:start + batch_size]))
            pooled[start:start + len(x)] = model.encode(x)[:, 1:, :].mean(dim=1).numpy()
            cnn[start:start + len(x)] = convs(x).numpy()
    finally:
        model.train(was_training)
    return pooled, cnn


def head_forward(model: ViTAstro, pooled: Tensor, cnn: Tensor, magnitude: Tensor) -> Tensor:
    """The trained part of ``ViTAstro.forward`` on cached features -> ``[B]`` (same ops, same order)."""
    vit = model.vit_block(model.head(model.fc_norm(pooled)))
    image_features = model.inception_model.vis_inception[CNN_HEAD_START:](cnn)
    mag_features = model.inception_model.magnitude_block(magnitude.to(torch.float32))
    return model.concat_block(torch.cat((vit, image_features, mag_features), dim=1)).reshape(-1)


def freeze_for_cached_training(model: ViTAstro) -> list[nn.Parameter]:
    """Freeze the encoder (as published) and the CNN convolutions; return the trainable parameters."""
    freeze_transformer(model)
    model.inception_model.vis_inception[:CNN_HEAD_START].requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def dz_huber(pred: Tensor, target: Tensor, delta: float) -> Tensor:
    """Mean Huber loss of ``dz = (pred - target)/(1 + target)``, scaled by 1/delta (so ~|dz| far out)."""
    dz = (pred - target) / (1.0 + target)
    return nn.functional.huber_loss(dz, torch.zeros_like(dz), delta=delta) / delta


class HeadTrainer:
    """Trains the non-frozen part of a ``ViTAstro`` on cached frozen features; ``preprocessing`` maps raw
    (jittered) magnitudes to network inputs exactly as at inference."""

    def __init__(self, model: ViTAstro, cfg: TrainConfig, preprocessing: Preprocessing) -> None:
        self.model = model
        self.cfg = cfg
        self.pre = preprocessing
        self.params = freeze_for_cached_training(model)

    def _inputs(self, magnitude: np.ndarray) -> Tensor:
        return torch.from_numpy(self.pre.apply_magnitude(magnitude))

    @torch.inference_mode()
    def predict(self, pooled: np.ndarray, cnn: np.ndarray, magnitude: np.ndarray, batch: int = 1024) -> np.ndarray:
        out = np.empty(len(pooled), dtype=np.float32)
        for s in range(0, len(pooled), batch):
            out[s:s + batch] = head_forward(self.model, torch.from_numpy(pooled[s:s + batch]),
                                            torch.from_numpy(cnn[s:s + batch]),
                                            self._inputs(magnitude[s:s + batch])).numpy()
        return out

    def fit(self, fit: dict[str, np.ndarray], hold: dict[str, np.ndarray] | None, progress: bool = True,
            on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Train on ``fit`` (``pooled``, ``cnn``, ``magnitude``, ``mag_err``, ``z``); keep the best holdout epoch's
        weights (lowest holdout loss). Returns the history."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed + 1)
        rng = np.random.default_rng([cfg.seed, 11])
        n = len(fit["z"])
        steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        total = steps_per_epoch * max(1, cfg.epochs)
        warm = steps_per_epoch * cfg.warmup_epochs
        # fused: one kernel over all tensors, 4x faster than the default per-tensor loop on CPU
        opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)

        def lr_at(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress_ = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        pooled = torch.from_numpy(fit["pooled"])
        cnn = torch.from_numpy(fit["cnn"])
        z = torch.from_numpy(fit["z"].astype(np.float32))
        history: list[dict[str, float]] = []
        best: tuple[float, int, dict[str, Tensor]] | None = None
        bar = progress_bar(total=total, desc=f"train {cfg.name}", disable=not progress, unit="step")
        self.model.train()
        try:
            for epoch in range(cfg.epochs):
                t0 = time.perf_counter()
                order = torch.randperm(n, generator=g).numpy()
                mags = fit["magnitude"]
                if cfg.mag_jitter > 0:
                    mags = mags + rng.standard_normal(mags.shape) * fit["mag_err"] * cfg.mag_jitter
                mag_in = self._inputs(mags)
                running = 0.0
                for s in range(0, n, cfg.batch_size):
                    idx = torch.from_numpy(order[s:s + cfg.batch_size])
                    pred = head_forward(self.model, pooled[idx], cnn[idx], mag_in[idx])
                    loss = dz_huber(pred, z[idx], cfg.huber_delta)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    running += loss.item() * len(idx)
                    bar.update(1)
                row: dict[str, float] = {"epoch": epoch + 1, "train_loss": running / n,
                                         "lr": float(opt.param_groups[0]["lr"]), "epoch_s": time.perf_counter() - t0}
                if hold is not None and len(hold["z"]):
                    zh = self.predict(hold["pooled"], hold["cnn"], hold["magnitude"])
                    with torch.no_grad():
                        row["holdout_loss"] = float(dz_huber(torch.from_numpy(zh), torch.from_numpy(
                            hold["z"].astype(np.float32)), cfg.huber_delta))
                    m = redshift_metrics(hold["z"], zh)
                    row.update(holdout_sigma_nmad=m["sigma_nmad"], holdout_outlier_005=m["outlier_005"])
                    if best is None or row["holdout_loss"] < best[0]:
                        best = (row["holdout_loss"], epoch, copy.deepcopy(self.model.state_dict()))
                bar.set_postfix(loss=f"{row['train_loss']:.4f}",
                                hold_nmad=f"{row.get('holdout_sigma_nmad', float('nan')):.4f}")
                history.append(row)
                if on_epoch:
                    on_epoch(row)
                if (best is not None and cfg.early_stopping_patience > 0
                        and epoch - best[1] >= cfg.early_stopping_patience):
                    log.info("early stop at epoch %d (best %d)", epoch + 1, best[1] + 1)
                    break
        finally:
            bar.close()
        if best is not None:
            self.model.load_state_dict(best[2])
            history.append({"best_epoch": best[1] + 1, "best_holdout_loss": best[0]})
        self.model.eval()
        return history


# --------------------------------------------------------------------------- the run
def _seed_everything(seed: int, threads: int | None) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(int(threads))


def train(cfg: TrainConfig | str = "default", out_dir: str | os.PathLike[str] | None = None, progress: bool = True,
          with_onnx: bool = True, evaluate_rows: int | None = None) -> TrainResult:
    """Train with ``cfg`` and write an artifact to ``out_dir`` (default ``models/<cfg.name>``). Render, split
    the holdout, fit the preprocessing, cache frozen features, train the heads, score the full network on the
    first ``evaluate_rows`` (default ``cfg.eval_rows``) validation rows with the kNN row, export."""
    if isinstance(cfg, str):
        if cfg not in CONFIGS:
            raise ValueError(f"unknown training config {cfg!r}; choose one of {sorted(CONFIGS)}")
        cfg = CONFIGS[cfg]
    out = Path(out_dir) if out_dir is not None else config.MODELS_DIR / cfg.name
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    _seed_everything(cfg.seed, cfg.threads)

    t = time.perf_counter()
    train_df = catalog.train_catalog()
    if cfg.max_train_rows is not None:
        train_df = train_df.iloc[: int(cfg.max_train_rows)].reset_index(drop=True)
    image, mags, errs = render_catalog(train_df, cfg.render_seed)
    z = train_df["zs"].to_numpy(dtype=np.float64)
    timings["render_train_s"] = time.perf_counter() - t

    fit_rows, hold_rows = split_holdout(len(train_df), cfg.holdout_fraction, cfg.seed)
    pre = fit_preprocessing(image[fit_rows], mags[fit_rows], cfg.image_transform, cfg.magnitude_features)

    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model()
    # final layer: start at the mean redshift with a small slope
    with torch.no_grad():
        last = model.concat_block[-1]
        last.weight.mul_(0.1)
        last.bias.fill_(float(np.mean(z[fit_rows])))
    pooled, cnn = cached_features(model, pre.apply_image(image), cfg.feature_batch, progress=progress)
    timings["frozen_features_s"] = time.perf_counter() - t

    def part(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"pooled": pooled[rows], "cnn": cnn[rows], "magnitude": mags[rows], "mag_err": errs[rows],
                "z": z[rows]}

    t = time.perf_counter()
    trainer = HeadTrainer(model, cfg, pre)
    history = trainer.fit(part(fit_rows), part(hold_rows) if len(hold_rows) else None, progress=progress)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    predictor = RedshiftPredictor(model.eval(), pre).eval()
    rows = evaluate_rows if evaluate_rows is not None else cfg.eval_rows
    metrics = evaluate_predictor(predictor, cfg, train_df=catalog.train_catalog(), rows=rows)
    if len(hold_rows):  # on the cached features, as early stopping saw it
        metrics["holdout"] = redshift_metrics(
            z[hold_rows], trainer.predict(pooled[hold_rows], cnn[hold_rows], mags[hold_rows]))
    timings["evaluate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    example = dataset.validation_rows(64, cfg.valid_render_seed)[:2]
    timings_so_far = dict(timings, total_before_export_s=time.perf_counter() - t_start)
    trainable = sum(p.numel() for p in trainer.params)
    art = write_artifact(
        out, model.state_dict(), pre, name=out.name,
        config={**cfg.to_dict(), "strategy": "frozen encoder + frozen CNN convolutions, cached; heads trained",
                "trainable_parameters": int(trainable), "torch_version": torch.__version__},
        training_data_sha256=training_data_sha256(config.TRAIN_CATALOG, cfg.render_seed),
        metrics=metrics, with_onnx=with_onnx, onnx_example=example,
        extra={"trained": True, "history": history, "timings": timings_so_far},
    )
    timings["export_s"] = time.perf_counter() - t
    wall = time.perf_counter() - t_start
    timings["wall_s"] = wall
    art.extra["timings"] = timings
    art.save()
    return TrainResult(artifact=art, history=history, metrics=metrics, wall_s=wall, timings=timings)


def evaluate_predictor(predictor: RedshiftPredictor, cfg: TrainConfig | None = None, train_df: Any = None,
                       rows: int | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Validation metrics of the full network (raw rendered cutouts -> redshift) + the kNN row. Returns
    ``{"validation": {...}, "knn": {...}, "validation_render_seed", "validation_file"}``."""
    cfg = cfg or TrainConfig()
    valid_df = catalog.valid_catalog()
    if rows is not None:
        valid_df = valid_df.iloc[: int(rows)].reset_index(drop=True)
    image, mags, _ = render_catalog(valid_df, cfg.valid_render_seed)
    z = valid_df["zs"].to_numpy(dtype=np.float64)
    z_pred = predictor.predict_numpy(image, mags, batch_size=batch_size)
    train_df = train_df if train_df is not None else catalog.train_catalog()
    return {
        "validation": redshift_metrics(z, z_pred),
        "knn": redshift_metrics(z, knn_baseline(train_df, valid_df)),
        "validation_file": config.VALID_CATALOG.name,
        "validation_render_seed": cfg.valid_render_seed,
    }


def cached_artifact(cfg: TrainConfig, out_dir: str | os.PathLike[str]) -> ModelArtifact | None:
    """The artifact in ``out_dir`` if it was trained with ``cfg`` on the current data, else None."""
    folder = Path(out_dir)
    if not (folder / "artifact.json").is_file():
        return None
    try:
        art = ModelArtifact.load(folder)
    except ArtifactError as exc:
        log.warning("cached model %s is not usable (%s); retraining", folder, exc)
        return None
    recorded = {k: v for k, v in art.config.items() if k in cfg.cache_key()}
    same_cfg = json.dumps(recorded, sort_keys=True) == json.dumps(cfg.cache_key(), sort_keys=True)
    same_data = art.training_data_sha256 == training_data_sha256(config.TRAIN_CATALOG, cfg.render_seed)
    if same_cfg and same_data and art.has("state_dict"):
        return art
    log.info("cached model %s does not match (config %s, data %s); retraining", folder,
             "same" if same_cfg else "differs", "same" if same_data else "differs")
    return None


def train_default(force: bool = False, cfg: TrainConfig | str = "default",
                  out_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> ModelArtifact:
    """The main job's model: train once into ``config.DEFAULT_MODEL_DIR``, reuse it while config and data hash
    match (``force=True`` retrains); a cached artifact without ``model.onnx`` is exported, not retrained."""
    cfg = CONFIGS[cfg] if isinstance(cfg, str) else cfg
    out = Path(out_dir) if out_dir is not None else config.DEFAULT_MODEL_DIR
    if not force:
        art = cached_artifact(cfg, out)
        if art is not None:
            log.info("using the cached model %s (trained %s)", out, art.created)
            if not art.has("onnx"):
                add_onnx(art)
            return art
    return train(cfg, out, progress=progress).artifact
