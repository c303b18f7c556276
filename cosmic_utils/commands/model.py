"""``cosmic model``: train | export | load-published | upload | evaluate (docs/training.md). The logic is
in :mod:`cosmic_utils.model` and :mod:`cosmic_utils.runtime.artifact`; the evaluation figure is drawn here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils.commands import cli_types
from cosmic_utils.model import artifacts


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="train, export, load the published weights, evaluate")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    t = sub.add_parser("train", help="train on the bundled SDSS galaxies (cached in models/default)")
    t.add_argument("--config", default="default", help="training configuration: default (~5-10 min on 2 cores) "
                   "or quick (seconds, for tests)")
    t.add_argument("--force", action="store_true", help="retrain even if a matching artifact exists")
    t.add_argument("--out", default=None, help="artifact folder (default: models/default for --config default, "
                   "else models/<config>)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)

    e = sub.add_parser("export", help="export model.onnx (preprocessing + network) and check it against torch")
    e.add_argument("--model", default=None, help="artifact folder (default: models/default)")
    e.add_argument("--rows", type=cli_types.positive_int, default=None, help="validation rows for the check (default: all 2,500)")
    e.set_defaults(func=_export)

    p = sub.add_parser("load-published", help="wrap the published checkpoint as a model artifact")
    p.add_argument("path", help="published checkpoint (pickled DataParallel model) or a plain state_dict file")
    p.add_argument("--out", required=True, help="artifact folder to write")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling the published checkpoint (restricted unpickler; only for files you trust)")
    p.add_argument("--no-onnx", action="store_true", help="write model.pt only")
    p.set_defaults(func=_load_published)

    u = sub.add_parser("upload", help="upload an artifact to s3://bucket/prefix/<sha256[:16]>/ (verified, idempotent)")
    u.add_argument("model_dir", type=Path, help="model artifact folder (artifact.json + files)")
    u.add_argument("dest", help="s3://bucket/prefix; the artifact goes under <prefix>/<sha256[:16]>/")
    u.set_defaults(func=_upload)

    v = sub.add_parser("evaluate", help="validation metrics (+ kNN row), predictions CSV and figures")
    v.add_argument("--model", default=None, help="artifact folder (default: models/default)")
    v.add_argument("--engine", default="torch-eager", help="engine for the predictions (default torch-eager)")
    v.add_argument("--seed", type=cli_types.nonnegative_int, default=None, help="render seed (default: the artifact's validation seed)")
    v.add_argument("--rows", type=cli_types.positive_int, default=None, help="first N validation rows only")
    v.add_argument("--json", default=None, help="also write the metrics table as JSON here")
    v.set_defaults(func=_evaluate)


def _validation_set(args: argparse.Namespace) -> tuple[Any, Path, Any, int] | None:
    """``(artifact, folder, validation rows, render seed)`` for ``--model`` / ``--rows`` / ``--seed``
    (default: the artifact's validation seed); None, the error printed, for a bad artifact."""
    from cosmic_utils import config
    from cosmic_utils.data import catalog
    from cosmic_utils.model.train import VALID_RENDER_SEED
    from cosmic_utils.runtime.artifact import ArtifactError, ModelArtifact

    folder = Path(args.model) if args.model else config.DEFAULT_MODEL_DIR
    try:
        art = ModelArtifact.load(folder)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    valid = catalog.valid_catalog()
    if args.rows:
        valid = valid.iloc[: args.rows].reset_index(drop=True)
    seed = getattr(args, "seed", None)
    return art, folder, valid, int(art.config.get("valid_render_seed", VALID_RENDER_SEED)) if seed is None else seed


def _train(args: argparse.Namespace) -> int:
    from cosmic_utils import config
    from cosmic_utils.model.train import CONFIGS, train_default

    if args.config not in CONFIGS:
        print(f"error: unknown --config {args.config!r}; choose one of {sorted(CONFIGS)}", file=sys.stderr)
        return 2
    cfg = CONFIGS[args.config]
    out = Path(args.out) if args.out else (config.DEFAULT_MODEL_DIR if args.config == "default"
                                           else config.MODELS_DIR / cfg.name)
    t0 = time.perf_counter()
    art = train_default(force=args.force, cfg=cfg, out_dir=out, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    timings = art.extra.get("timings", {})
    print(f"model artifact: {art.path} (created {art.created}; this call {wall:.1f} s; "
          f"training run {timings.get('wall_s', float('nan')):.1f} s)")
    print(_metrics_table(art.metrics))
    return 0


def _metrics_table(metrics: dict[str, Any]) -> str:
    import pandas as pd

    from cosmic_utils.data.evaluation import format_table
    from cosmic_utils.runtime.metrics import METRIC_NAMES

    rows = []
    for key, label in (("validation", "model (validation)"), ("knn", "kNN (k=10, r + colours)"),
                       ("holdout", "model (training holdout)")):
        if isinstance(metrics.get(key), dict):
            rows.append({"model": label, **{k: metrics[key].get(k) for k in METRIC_NAMES}})
    if not rows:
        return "(no metrics recorded)"
    return format_table(pd.DataFrame(rows))


def _export(args: argparse.Namespace) -> int:
    from cosmic_utils.model.artifacts import add_onnx
    from cosmic_utils.model.export import compare_onnx_torch
    from cosmic_utils.model.train import render_catalog

    loaded = _validation_set(args)
    if loaded is None:
        return 1
    art, _, valid, seed = loaded
    image, mags, _ = render_catalog(valid, seed)
    t0 = time.perf_counter()
    add_onnx(art, onnx_example=(image[:64], mags[:64]))
    export_s = time.perf_counter() - t0
    check = compare_onnx_torch(artifacts.predictor(art), art.onnx_path, image, mags)
    art.extra["onnx_check"] = {**check, "validation_render_seed": seed}
    art.save()
    print(f"exported {art.onnx_path} in {export_s:.1f} s; ONNX Runtime vs torch on {int(check['samples'])} "
          f"validation galaxies: max |diff| = {check['max_abs_diff']:.2e}, mean {check['mean_abs_diff']:.2e}")
    return 0 if check["max_abs_diff"] <= 1e-4 else 1


def _load_published(args: argparse.Namespace) -> int:
    from cosmic_utils.model.artifacts import artifact_from_published
    from cosmic_utils.model.checkpoint import CheckpointError

    try:
        art = artifact_from_published(args.path, args.out, trust=args.trust_pickle, with_onnx=not args.no_onnx)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published weights -> {art.path} (files: {', '.join(sorted(art.files))}; identity preprocessing)")
    return 0


def _density_scatter(ax: Any, x: np.ndarray, y: np.ndarray, bins: int = 80) -> Any:
    """Scatter coloured by point density (counts of each point's 2-D histogram bin), densest on top."""
    h, xe, ye = np.histogram2d(x, y, bins=bins)
    ix = np.clip(np.searchsorted(xe, x, side="right") - 1, 0, bins - 1)
    iy = np.clip(np.searchsorted(ye, y, side="right") - 1, 0, bins - 1)
    dens = h[ix, iy]
    order = np.argsort(dens)
    return ax.scatter(x[order], y[order], c=dens[order], s=5, cmap="viridis", lw=0)


def evaluation_figure(z_spec: np.ndarray, z_pred: np.ndarray, r_mag: np.ndarray, title: str) -> Any:
    """Three panels: z_pred vs z_spec (density-coloured), dz vs z_spec, dz vs r magnitude."""
    import matplotlib.pyplot as plt

    from cosmic_utils.analysis import plots
    from cosmic_utils.runtime.metrics import redshift_metrics, sigma_nmad

    plots.set_style()
    dz = (z_pred - z_spec) / (1 + z_spec)
    m = redshift_metrics(z_spec, z_pred)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    ax = axes[0]
    fig.colorbar(_density_scatter(ax, z_spec, z_pred), ax=ax, label="galaxies per bin")
    hi = float(max(z_spec.max(), z_pred.max())) * 1.02
    ax.plot([0, hi], [0, hi], "k-", lw=0.8)
    grid = np.linspace(0, hi, 50)
    for sign in (-1, 1):
        ax.plot(grid, grid + sign * 0.05 * (1 + grid), "k:", lw=0.6)
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="z_spec", ylabel="z_pred")
    ax.set_aspect("equal", adjustable="box")
    ax.text(0.03, 0.97, f"N = {m['n']:,}\nsigma_NMAD = {m['sigma_nmad']:.4f}\n"
            f"|dz|>0.05: {100 * m['outlier_005']:.2f} %\nbias = {m['bias']:+.4f}",
            transform=ax.transAxes, va="top", fontsize=9)
    for ax, x, label in ((axes[1], z_spec, "z_spec"), (axes[2], r_mag, "r magnitude (AB)")):
        _density_scatter(ax, x, dz)
        ax.axhline(0, color="k", lw=0.8)
        for t in (-0.05, 0.05):
            ax.axhline(t, color="k", ls=":", lw=0.6)
        # running median and NMAD in bins of x
        edges = np.quantile(x, np.linspace(0, 1, 11))
        sels = [s for lo, hi_ in zip(edges[:-1], edges[1:], strict=True) if (s := (x >= lo) & (x <= hi_)).sum() >= 10]
        c = np.array([float(np.median(x[s])) for s in sels])
        md = np.array([float(np.median(dz[s])) for s in sels])
        nm = np.array([sigma_nmad(dz[s]) for s in sels])
        ax.plot(c, md, "r-", lw=1.2, label="running median")
        ax.plot(c, md + nm, "r--", lw=0.9, label="median +- sigma_NMAD")
        ax.plot(c, md - nm, "r--", lw=0.9)
        ax.set(ylim=(-0.15, 0.15), xlabel=label, ylabel="dz = (z_pred - z_spec) / (1 + z_spec)")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    return fig


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from cosmic_utils import config
    from cosmic_utils.analysis import plots
    from cosmic_utils.data import catalog
    from cosmic_utils.data.evaluation import accuracy_table, format_table
    from cosmic_utils.inference.predict import predict_arrays
    from cosmic_utils.model.train import render_catalog

    loaded = _validation_set(args)
    if loaded is None:
        return 1
    art, folder, valid, seed = loaded
    t0 = time.perf_counter()
    image, mags, _ = render_catalog(valid, seed)
    z_pred = predict_arrays(image, mags, folder, engine=args.engine)
    wall = time.perf_counter() - t0
    z_spec = valid["zs"].to_numpy(dtype=np.float64)
    table = accuracy_table(z_spec, {f"{art.name} ({args.engine})": z_pred}, train_df=catalog.train_catalog(),
                           valid_df=valid)
    print(f"validation: {len(valid)} galaxies of {config.VALID_CATALOG.name}, render seed {seed}, "
          f"{wall:.1f} s (render + predict)")
    print(format_table(table))
    out_dir = config.RUNS_DIR / "evaluate"
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = out_dir / f"predictions_{art.name}.csv"
    pd.DataFrame({"row": np.arange(len(valid)), "z_spec": z_spec, "z_pred": z_pred}).to_csv(
        pred_path, index=False, float_format="%.6f")
    fig = evaluation_figure(z_spec, z_pred.astype(np.float64), mags[:, 2],
                            f"{art.name}: {len(valid):,} validation galaxies (SDSS MGS), render seed {seed}")
    paths = plots.save(fig, f"model_evaluation_{art.name}")
    print(f"predictions -> {pred_path}\nfigures -> {', '.join(str(p) for p in paths)}")
    if args.json:
        Path(args.json).write_text(json.dumps(table.to_dict(orient="records"), indent=2))
    return 0


def _upload(args: argparse.Namespace) -> int:
    """Print the versioned s3 URI to pass as ``--model``."""
    from cosmic_utils.cloud.upload import UploadError, upload_model
    from cosmic_utils.commands import upload
    from cosmic_utils.runtime.artifact import ArtifactError
    from cosmic_utils.runtime.storage import StorageError

    return upload("cosmic model upload", upload_model, args.model_dir, args.dest,
                  (ArtifactError, UploadError, StorageError))
