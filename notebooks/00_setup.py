# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 Setup: real galaxies -> cutouts -> partitions, and the model
#
# Renders 5-band cutouts from the bundled SDSS Main Galaxy Sample photometry (the redshift never
# touches the image), writes partitions of a target size with a checksummed manifest, and trains
# (or reuses) a model artifact. Everything here is a call into `cosmic_utils`; the command line
# equivalents are `cosmic data prepare` and `cosmic model train`.

# %% tags=["parameters"]
data_gb: float = 0.01  # help: dataset size in GB (1e9 bytes; 20,520 bytes per sample)
partition_mb: float = 2.0  # help: partition size in published MB (2**20 bytes; 25 to 1,278 samples)
seed: int = 0  # help: seed of the resampling and rendering
source: str = "valid"  # help: catalogue the dataset is drawn from ("valid" or "train")
train_config: str = "default"  # help: "default" (beats the kNN anchor; ~4-9 min on 2 cores, once) or "quick" (tests only)

# %%
import logging

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import figs_local
from cosmic_utils.data import catalog, dataset, render
from cosmic_utils.runtime.storage import open_storage

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

# %% [markdown]
# ## The catalogue

# %%
train, valid = catalog.train_catalog(), catalog.valid_catalog()
print(f"{len(train)} training and {len(valid)} validation galaxies")
valid.describe().T[["mean", "min", "max"]].head(10)

# %% [markdown]
# ## A few rendered cutouts (u, g, r, i, z)

# %%
rows = valid.head(4)
cut = render.render_cutouts(catalog.magnitudes(rows), catalog.magnitude_errors(rows), seed=seed)
figs_local.fig_cutouts(cut, config.BANDS)

# %% [markdown]
# ## Partitions and their manifest

# %%
out = dataset.default_dataset_dir(data_gb, partition_mb, seed=seed, source=source)
manifest = dataset.prepare_dataset(out, data_gb, partition_mb, seed=seed, source=source, progress=False)
report = manifest.verify(open_storage(str(out)))
target = partition_mb * config.PARTITION_MB
table = pd.DataFrame([{"key": e.key, "samples": e.samples, "bytes": e.bytes,
                       "vs_target_pct": 100 * (e.bytes / target - 1)} for e in manifest.entries])
print(out, "| checksums verified:", report.ok)
assert report.ok, report.bad
table

# %% [markdown]
# ## The model (trained once, cached in models/default, the one location notebooks 01-04 read)
#
# Its validation sigma_NMAD is printed next to the kNN anchor: a model above the anchor ("quick")
# is fine for timing checks, but `cosmic records ship` refuses every record it produces.

# %%
from cosmic_utils.model.train import train_default  # noqa: E402 (torch loads only when the model step runs)

artifact = train_default(cfg=train_config, out_dir=config.DEFAULT_MODEL_DIR, progress=False)
print("artifact:", artifact.path)
pd.DataFrame({k: v for k, v in artifact.metrics.items() if isinstance(v, dict) and "sigma_nmad" in v}).T
