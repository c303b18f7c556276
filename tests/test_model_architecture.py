"""The rebuilt pcm-AstroMAE against the published layout and the published forward fixture.

The fixture (tests/fixtures/astromae/forward_fixture.json) holds outputs of the published code
for hash-generated weights and inputs. Tolerances are tight (1e-6 relative): the same check
with a tanh GELU or a LayerNorm eps of 1e-5 must fail, which the last tests confirm.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cosmic_utils.model.astromae import (
    ViTAstro,
    build_model,
    count_flops,
    freeze_transformer,
)
from cosmic_utils.model.fixture import fixture_inputs, fixture_state_dict, hash_unit

RTOL = 1e-6


@pytest.fixture(scope="module")
def layout(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "astromae" / "state_dict_layout.json").read_text())


@pytest.fixture(scope="module")
def forward_fixture(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "astromae" / "forward_fixture.json").read_text())


@pytest.fixture(scope="module")
def fixture_weights() -> dict[str, torch.Tensor]:
    return fixture_state_dict(build_model().state_dict())


def _fixture_model(weights: dict[str, torch.Tensor]) -> ViTAstro:
    model = build_model()
    model.load_state_dict(weights)
    return model.eval()


def _run_with_hooks(model: nn.Module, names: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:

        def hook(_mod: nn.Module, _args: Any, output: torch.Tensor, name: str = name) -> None:
            captured[name] = output.detach().clone()

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    image, magnitude = fixture_inputs()
    try:
        with torch.no_grad():
            out = model([image, magnitude])
    finally:
        for handle in handles:
            handle.remove()
    return out, captured


def _mismatches(out: torch.Tensor, captured: dict[str, torch.Tensor], fx: dict[str, Any]) -> list[str]:
    """Every disagreement with the fixture beyond RTOL (empty list: all match)."""
    problems: list[str] = []
    expected_out = np.asarray(fx["expected_output"])
    got_out = out.double().flatten().numpy()
    if got_out.shape != expected_out.shape or not np.allclose(got_out, expected_out, rtol=RTOL, atol=0):
        problems.append(f"output {got_out} != {expected_out}")
    for name, exp in fx["intermediate"].items():
        got = captured[name].double()
        if list(got.shape) != exp["shape"]:
            problems.append(f"{name}: shape {list(got.shape)} != {exp['shape']}")
            continue
        per_sample = got.reshape(got.shape[0], -1)
        abs_sum = per_sample.abs().sum(1).numpy()
        signed = per_sample.sum(1).numpy()
        ref_abs = np.asarray(exp["abs_sum_per_sample"])
        scale = ref_abs  # signed sums cancel; measure their error against the absolute sum
        if not np.all(np.abs(abs_sum - ref_abs) <= RTOL * scale):
            problems.append(f"{name}: abs sums off by {np.max(np.abs(abs_sum - ref_abs) / scale):.2e}")
        if not np.all(np.abs(signed - np.asarray(exp["sum_per_sample"])) <= RTOL * scale):
            problems.append(
                f"{name}: sums off by {np.max(np.abs(signed - exp['sum_per_sample']) / scale):.2e}"
            )
        first = per_sample[0, :16].numpy()
        ref_first = np.asarray(exp["sample0_first16"])
        tol = RTOL * max(1.0, float(np.max(np.abs(ref_first))))
        if not np.all(np.abs(first - ref_first) <= tol):
            problems.append(f"{name}: first values off by {np.max(np.abs(first - ref_first)):.2e}")
    return problems


# --------------------------------------------------------------------------- layout


def test_state_dict_keys_order_shapes_dtypes(layout: dict[str, Any]) -> None:
    state = build_model().state_dict()
    got = [[k, list(v.shape), str(v.dtype)] for k, v in state.items()]
    assert len(got) == layout["num_state_dict_entries"] == 508
    for i, (g, e) in enumerate(zip(got, layout["bare_state_dict"], strict=True)):
        assert g == e, f"entry {i}: {g} != {e}"
    assert sum(v.numel() for v in state.values()) == layout["state_dict_numel"]


def test_parameter_counts_and_freeze(layout: dict[str, Any]) -> None:
    model = build_model()
    assert sum(p.numel() for p in model.parameters()) == layout["num_parameters"] == 15_902_889
    assert all(p.requires_grad for p in model.parameters())
    assert freeze_transformer(model) is model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == layout["num_parameters_requires_grad"] == 10_398_057
    frozen = [n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad]
    assert frozen == layout["parameter_keys_requires_grad_false"]


def test_shared_first_convolution_is_one_module() -> None:
    model = build_model()
    inc = model.inception_model
    assert inc.conv2d_init is inc.vis_inception[0]
    state = model.state_dict()
    assert torch.equal(
        state["inception_model.conv2d_init.weight"], state["inception_model.vis_inception.0.weight"]
    )


def test_numerics_settings() -> None:
    model = build_model()
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 25 and all(m.eps == 1e-6 for m in norms)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)
    gelus = [m for m in model.modules() if isinstance(m, nn.GELU)]
    assert len(gelus) == 12 and all(m.approximate == "none" for m in gelus)


# --------------------------------------------------------------------------- recipe


def test_hash_known_values() -> None:
    # hash(0, 0): x = 0 stays 0 -> 0 / 2**31 - 1
    assert hash_unit(0, 0) == -1.0
    values = hash_unit(np.arange(100_000, dtype=np.uint64), 7)
    assert values.min() >= -1.0 and values.max() < 1.0
    assert abs(values.mean()) < 0.01  # roughly uniform
    # the same number from plain Python integers (the recipe's exact arithmetic)
    M = 2**32 - 1
    t, j = 12345, 678
    x = (t + j * 0x9E3779B9) & M
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & M
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & M
    x = x ^ (x >> 16)
    assert hash_unit(t, j) == x / 2**31 - 1


# --------------------------------------------------------------------------- forward fixture


def test_forward_matches_published_fixture(
    forward_fixture: dict[str, Any], fixture_weights: dict[str, torch.Tensor]
) -> None:
    model = _fixture_model(fixture_weights)
    names = list(forward_fixture["intermediate"])
    assert len(names) == 11
    out, captured = _run_with_hooks(model, names)
    assert out.shape == (8, 1) and out.dtype == torch.float32
    assert _mismatches(out, captured, forward_fixture) == []


def test_forward_call_styles_agree(fixture_weights: dict[str, torch.Tensor]) -> None:
    model = _fixture_model(fixture_weights)
    image, magnitude = fixture_inputs()
    with torch.no_grad():
        a = model([image, magnitude])
        b = model(image, magnitude)
        c = model((image[:3], magnitude[:3].float()))
    assert torch.equal(a, b)
    torch.testing.assert_close(c, a[:3], rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        model(image)
    with pytest.raises(ValueError, match="image must be"):
        model(image[:, :4], magnitude)


def test_sensitivity_to_inputs(
    forward_fixture: dict[str, Any], fixture_weights: dict[str, torch.Tensor]
) -> None:
    """Both inputs matter, by the amounts the published code showed (max |change| over the batch)."""
    model = _fixture_model(fixture_weights)
    image, magnitude = fixture_inputs()
    with torch.no_grad():
        base = model([image, magnitude])
        zero_image = model([torch.zeros_like(image), magnitude])
        brighter = model([image, magnitude + 0.1])
    sens = forward_fixture["sensitivity"]
    np.testing.assert_allclose(
        (zero_image - base).abs().max().item(), sens["output change with a zero image"], rtol=0, atol=2e-5
    )
    np.testing.assert_allclose(
        (brighter - base).abs().max().item(), sens["output change with magnitudes + 0.1"], rtol=0, atol=2e-5
    )


@pytest.fixture()
def variant_model(fixture_weights: dict[str, torch.Tensor]) -> Iterator[ViTAstro]:
    yield _fixture_model(fixture_weights)


def test_tolerance_detects_tanh_gelu(forward_fixture: dict[str, Any], variant_model: ViTAstro) -> None:
    for module in variant_model.modules():
        if isinstance(module, nn.GELU):
            module.approximate = "tanh"
    out, captured = _run_with_hooks(variant_model, list(forward_fixture["intermediate"]))
    problems = _mismatches(out, captured, forward_fixture)
    assert any(p.startswith("blocks.0") for p in problems), problems


def test_tolerance_detects_layernorm_eps(forward_fixture: dict[str, Any], variant_model: ViTAstro) -> None:
    for module in variant_model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = 1e-5
    out, captured = _run_with_hooks(variant_model, list(forward_fixture["intermediate"]))
    problems = _mismatches(out, captured, forward_fixture)
    assert any(p.startswith("blocks.0") for p in problems), problems


# --------------------------------------------------------------------------- FLOPs


def test_flop_count() -> None:
    model = build_model()
    per_sample = count_flops(model, batch_size=2) / 2
    assert per_sample == pytest.approx(221.5e6, rel=1e-3)
    # analytic cross-check of the 12 blocks (2 FLOPs per multiply-add)
    tokens, dim, hidden, heads, hd = 17, 192, 768, 3, 64
    per_block = (
        tokens * dim * 3 * dim  # qkv
        + 2 * heads * tokens * tokens * hd  # q k^T and weights v
        + tokens * dim * dim  # proj
        + 2 * tokens * dim * hidden  # fc1, fc2
        + 2 * 16 * dim * hidden // 48 * 1  # two grouped 1x1 convolutions (16 positions)
    )
    blocks_share = 12 * 2 * per_block / per_sample
    assert blocks_share == pytest.approx(0.84, abs=0.01)
