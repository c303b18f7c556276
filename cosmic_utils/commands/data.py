"""``cosmic data``: prepare | convert-pt | verify | upload | bench (docs/data.md).

Unreadable files of ``convert-pt`` and bad partitions of ``verify`` are listed, exit 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cosmic_utils.commands import cli_types
from cosmic_utils.progress import progress as progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare, convert, verify and benchmark datasets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser("prepare", help="render GB of resampled SDSS galaxies into partitions + manifest")
    p.add_argument("--out", default=None, help="local folder or s3://bucket/prefix "
                   "(default: data/generated/sdss_{gb}gb_{mb}mb_s{seed})")
    p.add_argument("--gb", type=cli_types.positive_float, default=None,
                   help="data size in GB (1e9 bytes of 20,520-byte samples); required unless --catalog-only")
    p.add_argument("--partition-mb", type=cli_types.positive_float, default=25.0, help="partition size in 2**20-byte MB (25 -> 1,278 samples)")
    p.add_argument("--seed", type=cli_types.nonnegative_int, default=0, help="seed of resampling and rendering")
    p.add_argument("--source", choices=("valid", "train"), default="valid",
                   help="catalogue to resample (valid: galaxies a model trained on 'train' never saw)")
    p.add_argument("--catalog-only", action="store_true",
                   help="write the catalogue rows as they are (no resampling; --gb is ignored)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)

    c = sub.add_parser("convert-pt", help="convert published .pt TensorDataset partitions to .cpart")
    c.add_argument("src", help="a .pt file or a folder of them")
    c.add_argument("--out", required=True, help="local folder or s3://bucket/prefix")
    c.set_defaults(func=_convert)

    v = sub.add_parser("verify", help="check every partition's size, checksum and format against the manifest")
    v.add_argument("dataset", help="dataset folder or s3://bucket/prefix")
    v.add_argument("--shallow", action="store_true", help="checksums and header only (skip the finite-value scan)")
    v.set_defaults(func=_verify)

    u = sub.add_parser("upload", help="upload a prepared dataset (partitions + manifest) to s3://; only what differs")
    u.add_argument("dataset", type=Path, help="prepared dataset folder (manifest.json + partitions)")
    u.add_argument("dest", help="s3://bucket/prefix")
    u.set_defaults(func=_upload)

    b = sub.add_parser("bench", help="renderer cutouts/s, partition write/read MB/s, peak RSS (< 1 min)")
    b.add_argument("--samples", type=cli_types.positive_int, default=4000, help="cutouts to render for the rate")
    b.add_argument("--threads", type=cli_types.positive_int, default=None, help="renderer threads (default: up to 4)")
    b.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    b.set_defaults(func=_bench)


def _prepare(args: argparse.Namespace) -> int:
    from cosmic_utils import config
    from cosmic_utils.data import catalog
    from cosmic_utils.data.dataset import default_dataset_dir, prepare_catalog_partitions, prepare_dataset

    if args.gb is None and not args.catalog_only:
        from cosmic_utils.exits import UsageError

        raise UsageError("--gb is required (or use --catalog-only)")
    t0 = time.perf_counter()
    if args.catalog_only:
        out = args.out or str(config.GENERATED_DIR / f"sdss_catalog_{args.source}_{args.partition_mb:g}mb_s{args.seed}")
        manifest = prepare_catalog_partitions(catalog.catalog_by_name(args.source), out, args.partition_mb,
                                              seed=args.seed, source=f"catalog:{args.source}",
                                              progress=not args.no_progress)
    else:
        out = args.out or str(default_dataset_dir(args.gb, args.partition_mb, args.seed, args.source))
        manifest = prepare_dataset(out, args.gb, args.partition_mb, seed=args.seed, source=args.source,
                                   progress=not args.no_progress)
    wall = time.perf_counter() - t0
    sizes = [e.bytes for e in manifest.entries]
    target = args.partition_mb * 2**20
    per = config.samples_per_partition(args.partition_mb)
    full = [e.bytes for e in manifest.entries if e.samples == per]
    dev = f"{max(abs(s - target) / target for s in full) * 100:.2f} %" if full else "n/a (no full partition)"
    print(f"wrote {manifest.partitions} partitions, {manifest.total_samples:,} samples, "
          f"{manifest.total_bytes / 1e9:.3f} GB on disk ({manifest.data_bytes / 1e9:.3f} GB counted as "
          f"published) to {out} in {wall:.1f} s ({manifest.total_samples / wall:,.0f} samples/s)")
    print(f"partition bytes: {sizes[0]:,} (target {target:,.0f}, max deviation of full partitions {dev}), "
          f"last {sizes[-1]:,}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from cosmic_utils import exits
    from cosmic_utils.data.pt_io import ConvertError, convert_pt

    prog = "cosmic data convert-pt"
    try:
        manifest = convert_pt(args.src, args.out, progress=sys.stderr.isatty())
    except ConvertError as exc:
        exits.print_failures(prog, exc.failures, what="file", id_key="file")
        raise
    failures = manifest.extra.get("failed_files") or []
    print(f"converted {manifest.partitions} partitions, {manifest.total_samples:,} samples -> {args.out}")
    if failures:
        exits.print_failures(prog, failures, what="file", id_key="file")
        print(f"{prog}: {len(failures)} of {len(failures) + manifest.partitions} files could not be converted "
              "(listed above and in the manifest's failed_files); the dataset holds the others", file=sys.stderr)
        return exits.PARTIAL
    return exits.OK


def _verify(args: argparse.Namespace) -> int:
    from cosmic_utils.runtime.manifest import Manifest
    from cosmic_utils.runtime.storage import open_storage

    store = open_storage(args.dataset)
    manifest = Manifest.read(store)  # ManifestError / StorageError: one line, exit 1 (cli.main)
    bar = (lambda entries: progress_bar(entries, desc="verify", unit="part")) if sys.stderr.isatty() else None
    report = manifest.verify(store, deep=not args.shallow, progress=bar)
    # Partitions on disk the manifest does not list are worth a warning (a listing would see them).
    listed = {e.key for e in manifest.entries}
    extra = [k for k in store.list_keys("part-") if k.endswith(".cpart") and k not in listed]
    for key in extra:
        print(f"warning: {store.uri(key)} is not in the manifest", file=sys.stderr)
    print(f"{store.root_uri}: {report}")
    if not report.ok:
        from cosmic_utils import exits

        exits.print_failures("cosmic data verify", [{"partition_id": k, "error": v} for k, v in sorted(report.bad.items())])
        return exits.PARTIAL
    return 0


def run_data_bench(samples: int = 4000, threads: int | None = None) -> dict[str, Any]:
    """The numbers ``cosmic data bench`` prints (also used by ``make bench``)."""
    import os
    import platform
    import resource

    import numpy as np

    from cosmic_utils import config
    from cosmic_utils.data import catalog, render
    from cosmic_utils.runtime.partition import iter_batches, read_partition, write_partition

    df = catalog.valid_catalog()
    rows = catalog.resample_catalog(df, samples, seed=123)
    mags, errs = catalog.magnitudes(rows), catalog.magnitude_errors(rows)
    render.render_cutouts(mags[:256], errs[:256], seed=0, threads=threads)  # warm-up
    t0 = time.perf_counter()
    image = render.render_cutouts(mags, errs, seed=0, threads=threads)
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    render.render_cutouts(mags[:1000], errs[:1000], seed=0, threads=1)
    render1_s = time.perf_counter() - t0
    ratio = render.aperture_noise_check(catalog.magnitudes(df), catalog.magnitude_errors(df), seed=7)

    per = config.samples_per_partition(25)
    reps = int(np.ceil(per / samples))
    img = np.concatenate([image] * reps)[:per]
    mag = np.concatenate([mags] * reps)[:per]
    z = np.zeros(per, dtype=np.float32)
    write_s, read_s, stream_s, nbytes = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.cpart"
        for _ in range(3):
            t0 = time.perf_counter()
            info = write_partition(path, img, mag, z)
            write_s.append(time.perf_counter() - t0)
            nbytes = info.nbytes
            t0 = time.perf_counter()
            read_partition(path, expected=info)
            read_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _b in iter_batches(path, 256):
                pass
            stream_s.append(time.perf_counter() - t0)
    mb = nbytes / 2**20
    return {
        "render_samples": samples,
        "render_threads": threads if threads is not None else min(4, os.cpu_count() or 1),
        "render_cutouts_per_s": samples / render_s,
        "render_cutouts_per_s_1thread": 1000 / render1_s,
        "noise_over_catalog_error": dict(zip(config.BANDS, (float(x) for x in ratio), strict=True)),
        "partition_mb": mb,
        "partition_samples": per,
        "write_mb_per_s": mb / min(write_s),
        "read_verify_mb_per_s": mb / min(read_s),
        "stream_read_mb_per_s": mb / min(stream_s),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,  # KiB on Linux
        "cpu_count": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "numpy_version": np.__version__,
        "renderer_version": render.RENDERER_VERSION,
    }


def _bench(args: argparse.Namespace) -> int:
    res = run_data_bench(args.samples, args.threads)
    noise = ", ".join(f"{b} {v:.2f}" for b, v in res["noise_over_catalog_error"].items())
    print(f"render: {res['render_cutouts_per_s']:,.0f} cutouts/s with {res['render_threads']} threads "
          f"({res['render_cutouts_per_s_1thread']:,.0f}/s on 1 thread), 32x32x5, {res['render_samples']:,} cutouts")
    print(f"noise: aperture-flux scatter / catalogue error per band: {noise}")
    print(f"partition ({res['partition_mb']:.1f} MB, {res['partition_samples']:,} samples): "
          f"write {res['write_mb_per_s']:,.0f} MB/s, read+verify {res['read_verify_mb_per_s']:,.0f} MB/s, "
          f"streamed read {res['stream_read_mb_per_s']:,.0f} MB/s (MB = 2**20 bytes)")
    print(f"peak RSS: {res['peak_rss_mb']:,.0f} MB")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        from cosmic_utils.provenance import stamped

        out.write_text(json.dumps(stamped(res), indent=1) + "\n")
        print(f"wrote {out}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    """Print the dataset's s3 URI to pass as ``--data``."""
    from cosmic_utils.cloud.upload import UploadError, upload_dataset
    from cosmic_utils.commands import upload
    from cosmic_utils.runtime.manifest import ManifestError
    from cosmic_utils.runtime.storage import StorageError

    return upload("cosmic data upload", upload_dataset, args.dataset, args.dest,
                  (ManifestError, UploadError, FileNotFoundError, StorageError))
