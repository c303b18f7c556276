"""How closely a float32 forward of the rebuilt pcm-AstroMAE must match the published fixture.

Float32 results differ between CPUs in their last bits, so the tolerance (:data:`FIXTURE_TOL`) is
derived from float32 rounding (a probabilistic bound on the longest dot product), not measured on
one machine. Every check is a dimensionless deviation ``|got - expected| / scale``; the wrong
variants the check must reject live next to it, and ``python -m cosmic_utils.model.numerics``
measures the margins. Reasoning and tables: docs/portability.md "Float32 numerics across CPUs".
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmic_utils.model.astromae import LN_EPS, NormalCell, ViTAstro, build_model
from cosmic_utils.model.fixture import fixture_inputs, fixture_state_dict, hash_unit

U32: float = 2.0**-24  # unit roundoff of float32 (half the machine epsilon 2**-23)
LONGEST_REDUCTION: int = 3216  # longest dot product of the network: concat_block's input (1096 + 1096 + 1024)
LAMBDA: float = 4.0  # probabilistic-bound multiplier: fails with probability < 2 exp(-8) = 7e-4 per dot product
#: Largest allowed deviation of any fixture check, 2 (two float32 implementations) x lam sqrt(n) u = 2.7e-5.
FIXTURE_TOL: float = 2 * LAMBDA * math.sqrt(LONGEST_REDUCTION) * U32

FIXTURE_PATH = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "astromae" / "forward_fixture.json"

ISA_CAPS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
"""Environment caps that make this CPU run a narrower one's kernels (read when torch loads: fresh process only)."""


def load_fixture(path: Path = FIXTURE_PATH) -> dict[str, Any]:
    """The published forward fixture (outputs, per-layer sums and first values)."""
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def _fixture_weights() -> dict[str, Tensor]:
    """The fixture's hash weights (built once per process: hashing 16 M values takes seconds)."""
    return fixture_state_dict(build_model().state_dict())


def fixture_model(dtype: torch.dtype = torch.float32) -> ViTAstro:
    """A fresh network with the fixture's hash weights, eval mode, in ``dtype`` (in float64 the magnitudes
    still pass the published float32 cast first, then are widened)."""
    model = build_model()
    model.load_state_dict(_fixture_weights())
    model = model.eval().to(dtype)
    if dtype != torch.float32:
        model.inception_model.magnitude_block.register_forward_pre_hook(lambda _m, args: (args[0].to(dtype),))
    return model


def run_fixture_forward(model: nn.Module, names: list[str]) -> tuple[Tensor, dict[str, Tensor]]:
    """Forward the fixture inputs, returning the output and the outputs of submodules ``names``."""
    captured: dict[str, Tensor] = {}
    handles = []
    for name in names:

        def hook(_mod: nn.Module, _args: Any, output: Tensor, name: str = name) -> None:
            captured[name] = output.detach().clone()

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    image, magnitude = fixture_inputs()
    dtype = next(model.parameters()).dtype
    try:
        with torch.no_grad():
            out = model([image.to(dtype), magnitude])
    finally:
        for handle in handles:
            handle.remove()
    return out, captured


def fixture_deviations(out: Tensor, captured: dict[str, Tensor], fx: dict[str, Any]) -> dict[str, float]:
    """Every fixture check as a dimensionless deviation; ``inf`` on a shape error. Scales: ``output`` per
    sample its |expected|; ``abs_sum`` and ``sum`` per sample the sum of |x|; ``values`` (first 16 of sample
    0) the mean |x| of that sample."""
    dev: dict[str, float] = {}
    expected_out = np.asarray(fx["expected_output"])
    got_out = out.double().flatten().numpy()
    if got_out.shape != expected_out.shape:
        dev["output"] = math.inf
    else:
        dev["output"] = float(np.max(np.abs(got_out - expected_out) / np.abs(expected_out)))
    for name, exp in fx["intermediate"].items():
        got = captured[name].double()
        if list(got.shape) != exp["shape"]:
            dev[f"{name}/shape"] = math.inf
            continue
        per_sample = got.reshape(got.shape[0], -1)
        ref_abs = np.asarray(exp["abs_sum_per_sample"])
        dev[f"{name}/abs_sum"] = float(np.max(np.abs(per_sample.abs().sum(1).numpy() - ref_abs) / ref_abs))
        signed = per_sample.sum(1).numpy()
        dev[f"{name}/sum"] = float(np.max(np.abs(signed - np.asarray(exp["sum_per_sample"])) / ref_abs))
        mean_abs0 = ref_abs[0] / per_sample.shape[1]
        first = per_sample[0, :16].numpy()
        dev[f"{name}/values"] = float(np.max(np.abs(first - np.asarray(exp["sample0_first16"]))) / mean_abs0)
    return dev


def mismatches(deviations: dict[str, float], tol: float = FIXTURE_TOL) -> list[str]:
    """The checks whose deviation exceeds ``tol`` (empty: the forward matches the fixture)."""
    return [f"{k}: deviation {v:.3g} > {tol:.2g}" for k, v in deviations.items() if not v <= tol]


# --------------------------------------------------------------------------- wrong variants
# Each patches a fixture model (instances only) into a plausible mis-rebuild the checks must reject.


def _set_attr(model: nn.Module, kind: type[nn.Module], attr: str, value: Any) -> None:
    for module in model.modules():
        if isinstance(module, kind):
            setattr(module, attr, value)


def _skip_block(model: nn.Module, index: int) -> None:
    model.blocks[index].forward = lambda x: x  # type: ignore[index, method-assign]


def _no_pcm(model: nn.Module) -> None:
    for block in model.blocks:  # type: ignore[attr-defined]
        block.PCM.forward = lambda grid: torch.zeros_like(grid)


def _pcm_gelu(model: nn.Module) -> None:
    for block in model.blocks:  # type: ignore[attr-defined]
        block.PCM[2] = nn.GELU()


def _pool_with_cls(model: nn.Module) -> None:
    def forward_transformer(image: Tensor) -> Tensor:
        return model.vit_block(model.head(model.fc_norm(model.encode(image).mean(dim=1))))  # cls token included

    model.forward_transformer = forward_transformer  # type: ignore[method-assign]


def _swapped_bands(model: nn.Module) -> None:
    original = model.forward

    def forward(x: Any, magnitude: Tensor | None = None) -> Tensor:
        image, mags = (x[0], x[1]) if magnitude is None else (x, magnitude)
        return original([image.flip(1), mags])  # z, i, r, g, u instead of u, g, r, i, z

    model.forward = forward  # type: ignore[method-assign]


def _post_norm(model: nn.Module) -> None:
    def forward(self: NormalCell, x: Tensor) -> Tensor:  # norm after the residual add
        b, n, c = x.shape
        grid = x[:, 1:, :].reshape(b, 4, 4, c).permute(0, 3, 1, 2).contiguous()
        conv_x = self.PCM(grid).permute(0, 2, 3, 1).reshape(b, n - 1, c)
        x = self.norm1(x + self.attn(x))
        x = torch.cat((x[:, :1, :], x[:, 1:, :] + conv_x), dim=1)
        return self.norm2(x + self.mlp(x))

    for module in model.modules():
        if isinstance(module, NormalCell):
            module.forward = forward.__get__(module)  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[nn.Module], None]] = {
    "tanh GELU": partial(_set_attr, kind=nn.GELU, attr="approximate", value="tanh"),
    "LayerNorm eps 1e-5": partial(_set_attr, kind=nn.LayerNorm, attr="eps", value=1e-5),
    "LayerNorm eps 1e-12": partial(_set_attr, kind=nn.LayerNorm, attr="eps", value=1e-12),
    "BatchNorm eps 1e-3": partial(_set_attr, kind=nn.BatchNorm2d, attr="eps", value=1e-3),
    "BatchNorm eps 1e-6": partial(_set_attr, kind=nn.BatchNorm2d, attr="eps", value=1e-6),
    "frozen block 0 skipped": partial(_skip_block, index=0),
    "frozen block 6 skipped": partial(_skip_block, index=6),
    "frozen block 11 skipped": partial(_skip_block, index=11),
    "PCM branch missing": _no_pcm,
    "PCM SiLU -> GELU": _pcm_gelu,
    "cls token in the mean pool": _pool_with_cls,
    "post-norm blocks": _post_norm,
    "bands reversed": _swapped_bands,
}
"""Plausible mis-rebuilds (name -> in-place patch of a fixture model)."""

PUBLISHED_BN_EPS: float = 1e-5  # BatchNorm eps of the published network (PyTorch's default)


def layernorm_eps_deviations(model: nn.Module) -> dict[str, float]:
    """Deviation of each LayerNorm from LayerNorm(eps=LN_EPS) on tokens of variance LN_EPS, where eps dominates
    (output ``z / sqrt(2) * w + b``; eps 1e-5 would give ``z / sqrt(11)``), against the float64 closed form."""
    dev: dict[str, float] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.LayerNorm):
            continue
        width = module.normalized_shape[-1]
        z = torch.from_numpy(hash_unit(np.arange(4 * width, dtype=np.uint64), 2001)).reshape(4, width)
        z = (z - z.mean(-1, keepdim=True)) / z.std(-1, correction=0, keepdim=True)
        x = (0.01 + math.sqrt(LN_EPS) * z).to(module.weight.dtype)
        with torch.no_grad():
            got = module(x).double()
        xd = x.double()
        mean = xd.mean(-1, keepdim=True)
        var = xd.var(-1, correction=0, keepdim=True)
        w, b = module.weight.detach().double(), module.bias.detach().double()
        ref = (xd - mean) / torch.sqrt(var + LN_EPS) * w + b
        dev[f"{name} on flat tokens"] = float(((got - ref).abs().max() / ref.abs().mean()).item())
    return dev


def batchnorm_eps_deviations(model: nn.Module) -> dict[str, float]:
    """Deviation of each BatchNorm from BatchNorm(eps=1e-5) at zero running variance and mean, where the output
    is ``x / sqrt(eps) * w + b`` (the fixture's variances >= 1 hide eps: 1e-5 vs 1e-6 moves it ~eps/2)."""
    dev: dict[str, float] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.BatchNorm2d):
            continue
        probe = copy.deepcopy(module).eval()
        probe.running_var.zero_()
        probe.running_mean.zero_()  # a nonzero mean would cancel against the bias at gain 1/sqrt(eps)
        dtype = probe.weight.dtype
        channels = probe.num_features
        x = torch.from_numpy(hash_unit(np.arange(2 * channels * 9, dtype=np.uint64), 2002))
        x = x.reshape(2, channels, 3, 3).to(dtype)
        with torch.no_grad():
            got = probe(x).double()
        shape = (1, channels, 1, 1)
        ref = (x.double() / math.sqrt(PUBLISHED_BN_EPS) * probe.weight.detach().double().reshape(shape)
               + probe.bias.detach().double().reshape(shape))
        dev[f"{name} at zero variance"] = float(((got - ref).abs().max() / ref.abs().mean()).item())
    return dev


SUB_NOISE_VARIANTS: dict[str, Callable[[nn.Module], dict[str, float]]] = {
    "BatchNorm eps 1e-6": batchnorm_eps_deviations,
}
"""Variants whose fixture deviation is within float32 error, and the targeted check that catches each."""


def sensitivity_deviations(model: nn.Module, fx: dict[str, Any]) -> dict[str, float]:
    """How far the published input sensitivities (max |output change|) are missed, over ``2 * max |output|``
    (a change is a difference of two outputs; a fixed atol of 2e-5 failed on an AVX2 AMD EPYC, issue 11)."""
    image, magnitude = fixture_inputs()
    dtype = next(model.parameters()).dtype
    image = image.to(dtype)
    with torch.no_grad():
        base = model([image, magnitude])
        changed = {"output change with a zero image": model([torch.zeros_like(image), magnitude]),
                   "output change with magnitudes + 0.1": model([image, magnitude + 0.1])}
    dev: dict[str, float] = {}
    for key, out in changed.items():
        scale = 2 * float(torch.maximum(base.abs(), out.abs()).max())
        dev[key] = abs((out - base).abs().max().item() - fx["sensitivity"][key]) / scale
    return dev


CHECKS: dict[str, Callable[[nn.Module, dict[str, Any]], dict[str, float]]] = {
    "fixture": lambda model, fx: fixture_deviations(*run_fixture_forward(model, list(fx["intermediate"])), fx),
    "sensitivity": sensitivity_deviations,
    "layernorm eps": lambda model, _fx: layernorm_eps_deviations(model),
    "batchnorm eps": lambda model, _fx: batchnorm_eps_deviations(model),
}
"""Every check that a fixture model must pass within FIXTURE_TOL (name -> deviations)."""


def check_deviations(model: nn.Module, fx: dict[str, Any]) -> dict[str, dict[str, float]]:
    """All checks of :data:`CHECKS` on ``model``."""
    return {name: check(model, fx) for name, check in CHECKS.items()}


# --------------------------------------------------------------------------- margin measurement


def _largest(deviations: dict[str, float]) -> tuple[str, float]:
    key = max(deviations, key=lambda k: deviations[k])
    return key, deviations[key]


def measure_here(fx: dict[str, Any]) -> dict[str, Any]:
    """This process's kernel path and the deviations of the correct float32 model in every check."""
    return {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "checks": check_deviations(fixture_model(), fx)}


def measure_paths(threads: tuple[int, ...] = (1, 2)) -> dict[str, dict[str, Any]]:
    """:func:`measure_here` under every ISA cap and thread count, each in a fresh subprocess."""
    results: dict[str, dict[str, Any]] = {}
    for cap, env_caps in ISA_CAPS.items():
        for n in threads:
            env = {**os.environ, **env_caps, "OMP_NUM_THREADS": str(n)}
            proc = subprocess.run([sys.executable, "-m", "cosmic_utils.model.numerics", "--here"], env=env,
                                  capture_output=True, text=True, check=True)
            results[f"{cap}, {n} thread(s)"] = json.loads(proc.stdout)
    return results


def main() -> None:
    """Print the margin table of docs/portability.md: cross-path spread vs wrong variants, per check."""
    fx = load_fixture()
    if "--here" in sys.argv:
        print(json.dumps(measure_here(fx)))
        return
    print(f"tolerance FIXTURE_TOL = {FIXTURE_TOL:.3g}\n")
    print("| correct model on | ATen | " + " | ".join(CHECKS) + " |")
    print("|---|---|" + "---|" * len(CHECKS))
    for label, res in measure_paths().items():
        cells = [f"{_largest(res['checks'][c])[1]:.2e}" for c in CHECKS]
        print(f"| {label} | {res['capability']} | " + " | ".join(cells) + " |")
    f64 = check_deviations(fixture_model(torch.float64), fx)
    print("| float64 (exact) | - | " + " | ".join(f"{_largest(f64[c])[1]:.2e}" for c in CHECKS) + " |\n")
    print("| wrong variant | " + " | ".join(CHECKS) + " | largest (check: where) |")
    print("|---|" + "---|" * len(CHECKS) + "---|")
    for name, patch in VARIANTS.items():
        model = fixture_model()
        patch(model)
        devs = check_deviations(model, fx)
        best = max(((c, *_largest(devs[c])) for c in CHECKS), key=lambda t: t[2])
        cells = [f"{_largest(devs[c])[1]:.2e}" for c in CHECKS]
        print(f"| {name} | " + " | ".join(cells) + f" | {best[0]}: {best[1]} |")


if __name__ == "__main__":
    main()
