"""Units used across the project, defined once in the runtime (Lambda needs them; the workstation
gets them re-exported by :mod:`cosmic_utils.config`)."""

from __future__ import annotations

#: One sample as the published work counts it: a 5x32x32 float32 image plus 5 float64
#: magnitudes. The redshift label travels with the sample but is not counted.
SAMPLE_BYTES: int = 5 * 32 * 32 * 4 + 5 * 8  # 20,520
#: Data sizes in GB mean 1e9 bytes unless a figure says GiB.
GB: int = 10**9
#: Partition sizes follow the published partitions, which count a "MB" as 2**20 bytes
#: (a "25 MB" partition holds 1,278 samples).
PARTITION_MB: int = 2**20
BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
#: sigma_NMAD = NMAD_FACTOR * median(|x - median(x)|): the normal-consistent scale of the MAD.
NMAD_FACTOR: float = 1.4826
