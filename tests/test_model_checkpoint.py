"""Checkpoint loading: plain state_dict files and the published pickled DataParallel model.

The published checkpoint is not in the repository, so the tests write one with the same
structure: classes registered under the published module names (``blocks.photoz`` ...) in
temporary fake modules, the model wrapped in ``nn.DataParallel``, ``torch.save``; then the
fake modules are removed from ``sys.modules`` so that the loader must cope without them, as
it must for the real file. The pickle's globals are compared with pickle_classes.json to show
the synthetic file names the same classes and functions as the real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickletools
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cosmic_utils.model import astromae
from cosmic_utils.model.astromae import ViTAstro, build_model
from cosmic_utils.model.checkpoint import (
    CheckpointError,
    ForbiddenGlobalError,
    StateDictMismatchError,
    UntrustedPickleError,
    load_model,
    load_published_checkpoint,
    load_state_dict_file,
)
from cosmic_utils.model.fixture import fixture_inputs, fixture_state_dict

# our class -> (published module, published class name); PCM was a plain nn.Sequential
PUBLISHED_NAMES: dict[type[nn.Module], tuple[str, str]] = {
    astromae.ViTAstro: ("blocks.model_vit_inception", "ViT_Astro"),
    astromae.InceptionMagnitudeModel: ("blocks.photoz", "Input_Mix_Model"),
    astromae.InceptionBlock: ("blocks.photoz", "InceptionBlock"),
    astromae.ConvBlock: ("blocks.photoz", "ConvBlock"),
    astromae.NormalCell: ("NormalCell", "NormalCell"),
    astromae.Attention: ("NormalCell", "Attention"),
    astromae.Mlp: ("NormalCell", "Mlp"),
    astromae.PatchEmbed: ("timm.models.layers.patch_embed", "PatchEmbed"),
}
FAKE_PACKAGES = ["blocks", "timm", "timm.models", "timm.models.layers"]


@contextlib.contextmanager
def published_module_names() -> Iterator[dict[type[nn.Module], type[nn.Module]]]:
    """Temporarily register look-alike classes under the published module names."""
    created: dict[str, types.ModuleType] = {}
    classes: dict[type[nn.Module], type[nn.Module]] = {}
    for name in FAKE_PACKAGES:
        created[name] = types.ModuleType(name)
    for ours, (mod_name, cls_name) in PUBLISHED_NAMES.items():
        module = created.setdefault(mod_name, types.ModuleType(mod_name))
        fake = type(cls_name, (ours,), {"__module__": mod_name, "__qualname__": cls_name})
        setattr(module, cls_name, fake)
        classes[ours] = fake
    saved = {name: sys.modules.get(name) for name in created}
    sys.modules.update(created)
    try:
        yield classes
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def to_published_classes(model: ViTAstro, classes: dict[type[nn.Module], type[nn.Module]]) -> None:
    """Re-class every submodule as the published class and add the stateless published children."""
    for module in model.modules():
        if type(module) is astromae.PCM:
            module.__class__ = nn.Sequential
        elif type(module) in classes:
            module.__class__ = classes[type(module)]
    model.pos_drop = nn.Dropout(0.0)  # stateless children of the published model
    model.patch_embed.norm = nn.Identity()


def save_published_like(
    path: Path, weights: dict[str, torch.Tensor], *, extra_attribute: bool = True, gpu_saved: bool = False
) -> None:
    """Write a checkpoint shaped like the published one: torch.save(DataParallel(model))."""
    with published_module_names() as classes:
        model = build_model()
        model.load_state_dict(weights)
        to_published_classes(model, classes)
        if extra_attribute:  # some published parameters carry an attribute
            model.patch_embed.proj.weight.pretrained_from = "mae"
        wrapped = nn.DataParallel(model)
        if gpu_saved:
            wrapped.src_device_obj = torch.device("cuda", 0)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(torch.serialization, "location_tag", lambda _storage: "cuda:0")
                torch.save(wrapped, path)
        else:
            torch.save(wrapped, path)
    for name in ["blocks", "blocks.photoz", "blocks.model_vit_inception", "NormalCell"]:
        assert name not in sys.modules


def pickle_globals(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    found = set()
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
    return found


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return fixture_state_dict(build_model().state_dict())


@pytest.fixture(scope="module")
def published_file(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("published") / "pcm_astromae_published.pt"
    save_published_like(path, weights)
    return path


# --------------------------------------------------------------------------- published pickle


def test_synthetic_checkpoint_names_the_published_globals(published_file: Path, fixtures_dir: Path) -> None:
    listed = json.loads((fixtures_dir / "astromae" / "pickle_classes.json").read_text())
    assert pickle_globals(published_file) == set(listed["pickle_globals_from_torch_save_of_DataParallel"])


def test_published_checkpoint_recovers_state_dict(
    published_file: Path, weights: dict[str, torch.Tensor]
) -> None:
    state = load_published_checkpoint(published_file, trust=True)
    assert list(state) == list(weights)  # all 508 keys, in the published order, no prefix
    assert len(state) == 508
    for key, value in weights.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key
    assert all(type(t) is torch.Tensor for t in state.values())  # plain tensors, not Parameters
    model = build_model()
    model.load_state_dict(state, strict=True)
    model.eval()
    image, magnitude = fixture_inputs()
    reference = build_model()
    reference.load_state_dict(weights)
    reference.eval()
    with torch.no_grad():
        assert torch.equal(model([image, magnitude]), reference([image, magnitude]))


def test_published_checkpoint_without_parameter_state(
    tmp_path: Path, weights: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "plain_params.pt"
    save_published_like(path, weights, extra_attribute=False)
    assert "torch._utils._rebuild_parameter_with_state" not in pickle_globals(path)
    state = load_published_checkpoint(path, trust=True)
    assert torch.equal(state["patch_embed.proj.weight"], weights["patch_embed.proj.weight"])


def test_gpu_saved_checkpoint_maps_to_cpu(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "gpu_saved.pt"
    save_published_like(path, weights, gpu_saved=True)
    assert "torch.device" in pickle_globals(path)
    state = load_published_checkpoint(path, trust=True)
    assert all(t.device.type == "cpu" for t in state.values())
    assert torch.equal(state["concat_block.2.weight"], weights["concat_block.2.weight"])


def test_untrusted_load_is_refused_before_reading(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil(f"touch {marker}")}, path)
    with pytest.raises(UntrustedPickleError) as err:
        load_published_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "trust=True" in message and "--trust-pickle" in message
    assert "execute code" in message
    assert not marker.exists()


class _Evil:
    """Pickles as a call to os.system (the classic pickle exploit)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil(f"touch {marker}")}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ForbiddenGlobalError) as err:
        load_published_checkpoint(path, trust=True)
    assert f"{os.system.__module__}.system" in str(err.value)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_eval_and_unknown_classes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "eval.pt"
    torch.save([_EvalEvil()], path)
    with pytest.raises(ForbiddenGlobalError, match=r"(__builtin__|builtins)\.eval"):
        load_published_checkpoint(path, trust=True)
    # a class under a published module name but not on the list
    with published_module_names():
        unknown = type("Sneaky", (nn.Module,), {"__module__": "blocks.photoz", "__qualname__": "Sneaky"})
        sys.modules["blocks.photoz"].Sneaky = unknown
        torch.save(unknown(), tmp_path / "sneaky.pt")
    with pytest.raises(ForbiddenGlobalError, match=r"blocks\.photoz\.Sneaky"):
        load_published_checkpoint(tmp_path / "sneaky.pt", trust=True)


def test_published_loader_rejects_wrong_model(tmp_path: Path) -> None:
    path = tmp_path / "small.pt"
    torch.save(nn.Sequential(nn.Linear(2, 3)), path)
    with pytest.raises(StateDictMismatchError, match="missing keys"):
        load_published_checkpoint(path, trust=True)
    raw = load_published_checkpoint(path, trust=True, validate=False)
    assert list(raw) == ["0.weight", "0.bias"]


# --------------------------------------------------------------------------- plain state_dict files


def test_state_dict_file_roundtrip_and_prefix(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    plain, prefixed = tmp_path / "plain.pt", tmp_path / "prefixed.pt"
    torch.save(weights, plain)
    torch.save({f"module.{k}": v for k, v in weights.items()}, prefixed)
    for path in (plain, prefixed):
        state = load_state_dict_file(path)
        assert list(state) == list(weights)
        assert all(torch.equal(state[k], v) for k, v in weights.items())
    model = load_model(plain)
    assert isinstance(model, ViTAstro) and not model.training
    assert torch.equal(model.head.weight, weights["head.weight"])


def test_state_dict_file_reports_every_problem(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    bad = dict(weights)
    del bad["head.bias"]
    bad["extra.weight"] = torch.zeros(3)
    bad["fc_norm.weight"] = torch.zeros(191)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(StateDictMismatchError) as err:
        load_state_dict_file(path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys (1): head.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "fc_norm.weight (file [191], model [192])" in message
    assert err.value.missing == ["head.bias"]


def test_state_dict_file_shared_conv_must_agree(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    bad = dict(weights)
    bad["inception_model.vis_inception.0.bias"] = bad["inception_model.vis_inception.0.bias"] + 1
    path = tmp_path / "twins.pt"
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="one module"):
        load_state_dict_file(path)


def test_state_dict_file_refuses_pickled_model(published_file: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="load_published_checkpoint"):
        load_state_dict_file(published_file)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_state_dict_file(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_state_dict_file(tmp_path / "list.pt")
