"""Load pcm-AstroMAE weights: plain state_dict files and the published pickled checkpoint.

Plain state_dict files load with ``torch.load(weights_only=True)``: no trust decision needed.
The published checkpoint pickles whole module objects of code not installed here; a restricted
unpickler maps every global it names to an allow-list (inert stand-in modules, a few torch
rebuild functions) and refuses the rest. Unpickling stays a trust decision (``trust=True``,
command line ``--trust-pickle``). Reasoning: docs/model.md "Loading weights".
"""

from __future__ import annotations

import functools
import os
import pickle
import types
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cosmic_utils.model.astromae import ViTAstro, build_model

PathLike = str | os.PathLike[str]

DATAPARALLEL_PREFIX = "module."
SHARED_MODULE_KEYS = ("inception_model.conv2d_init.", "inception_model.vis_inception.0.")
"""The one module registered under two names: both keys must hold equal values."""

PUBLISHED_MODULE_CLASSES: frozenset[str] = frozenset({
    "blocks.model_vit_inception.ViT_Astro",
    "blocks.photoz.Input_Mix_Model",
    "blocks.photoz.InceptionBlock",
    "blocks.photoz.ConvBlock",
    "NormalCell.NormalCell",
    "NormalCell.Attention",
    "NormalCell.Mlp",
    "timm.models.layers.patch_embed.PatchEmbed",
    "torch.nn.parallel.data_parallel.DataParallel",
})
"""Model classes named by the published pickle (research code, timm 0.4.12, DataParallel)."""

TORCH_NN_MODULE_CLASSES: frozenset[str] = frozenset(f"torch.nn.modules.{name}" for name in (
    "activation.GELU", "activation.ReLU", "activation.SiLU", "batchnorm.BatchNorm2d", "container.ModuleList",
    "container.Sequential", "conv.Conv2d", "dropout.Dropout", "flatten.Flatten", "linear.Identity", "linear.Linear",
    "normalization.LayerNorm", "pooling.AvgPool2d", "pooling.MaxPool2d",
))
"""``torch.nn`` classes inside the published model; they, too, become inert stand-ins."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""


class StateDictMismatchError(CheckpointError):
    """A state_dict does not fit the network (missing, unexpected or mis-shaped keys)."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"{source}: state_dict does not match the pcm-AstroMAE layout"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            parts = [f"{k} (file {list(got)}, model {list(want)})" for k, got, want in mismatched]
            lines.append(f"  shape mismatches ({len(mismatched)}): {', '.join(parts)}")
        super().__init__("\n".join(lines))


class UntrustedPickleError(CheckpointError, PermissionError):
    """Unpickling was not allowed: the caller did not opt in with ``trust=True``."""


class ForbiddenGlobalError(CheckpointError, pickle.UnpicklingError):
    """The pickle asked for a global (class or function) outside the allow-list."""


# --------------------------------------------------------------------------- state_dict files


def expected_shapes() -> OrderedDict[str, tuple[int, ...]]:
    """Key -> shape of the rebuilt network's state_dict, in order (built on the meta device)."""
    with torch.device("meta"):
        model = build_model()
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())


def normalize_state_dict(state: Mapping[str, Any], source: str = "state_dict") -> OrderedDict[str, Tensor]:
    """Check that ``state`` maps str -> Tensor and strip a ``module.`` prefix on every key."""
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        shown = ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise CheckpointError(f"{source}: entries that are not name -> tensor: {shown}")
    keys = list(state)
    if keys and all(k.startswith(DATAPARALLEL_PREFIX) for k in keys):
        return OrderedDict((k[len(DATAPARALLEL_PREFIX) :], state[k]) for k in keys)
    return OrderedDict((k, state[k]) for k in keys)


def validate_state_dict(state: Mapping[str, Tensor], source: str = "state_dict") -> None:
    """Raise ``StateDictMismatchError`` unless ``state`` has exactly the network's keys and shapes,
    ``CheckpointError`` if the two names of the shared first convolution hold different values."""
    want = expected_shapes()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    mismatched = [(k, tuple(state[k].shape), shape) for k, shape in want.items()
                  if k in state and tuple(state[k].shape) != shape]
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(source, missing, unexpected, mismatched)
    first, second = SHARED_MODULE_KEYS
    for key in [k for k in want if k.startswith(first)]:
        twin = second + key[len(first) :]
        if not torch.equal(state[key].cpu(), state[twin].cpu()):
            raise CheckpointError(f"{source}: {key} and {twin} differ, but they are one module in pcm-AstroMAE")


def load_state_dict_file(path: PathLike, map_location: str | torch.device = "cpu") -> OrderedDict[str, Tensor]:
    """Read a plain state_dict file (``weights_only=True``; a ``state_dict`` / ``model_state_dict`` wrapper
    unwrapped), strip ``module.``, validate. Raises ``FileNotFoundError``, ``CheckpointError`` (e.g. the
    published pickled model) or ``StateDictMismatchError``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such state_dict file")
    try:
        obj = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{file}: not a plain state_dict (the safe weights-only loader refused it: "
            f"{str(err).splitlines()[0]}). If this is the published pickled model, use "
            "load_published_checkpoint(path, trust=True) after deciding to trust the file."
        ) from None
    except (RuntimeError, OSError, EOFError) as err:
        raise CheckpointError(f"{file}: cannot be read as a torch file: {err}") from err
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model_state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a state_dict mapping")
    state = normalize_state_dict(obj, str(file))
    validate_state_dict(state, str(file))
    return state


def load_model(path: PathLike, map_location: str | torch.device = "cpu") -> ViTAstro:
    """``build_model()`` with the weights of a plain state_dict file, in eval mode."""
    state = load_state_dict_file(path, map_location=map_location)
    model = build_model()
    model.load_state_dict(state, strict=True)
    return model.to(torch.device(map_location)).eval()  # on the CPU: the same module, nothing copied


# --------------------------------------------------------------------------- published pickle


class StandInModule(nn.Module):
    """Inert replacement for a class named in the published pickle (``published_class``). Unpickling fills its
    ``__dict__`` through ``nn.Module.__setstate__``; nothing of the original class runs."""

    published_class: ClassVar[str] = "?"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"stand-in for {self.published_class} cannot run; load the collected tensors into "
                           "cosmic_utils.model.astromae.build_model()")


@functools.cache
def _stand_in(full_name: str) -> type[StandInModule]:
    short = full_name.rsplit(".", 1)[-1]
    return type(f"StandIn_{short}", (StandInModule,),
                {"published_class": full_name, "__module__": __name__, "__doc__": f"Stand-in for {full_name}."})


def _rebuild_parameter_with_state_checked(data: Tensor, requires_grad: bool, backward_hooks: Any, state: Any) -> Any:
    """``torch._utils._rebuild_parameter_with_state`` that accepts plain attribute names only."""
    dict_state, slots_state = state if isinstance(state, tuple) and len(state) == 2 else (state, None)
    for part in (dict_state, slots_state):
        if part is None:
            continue
        if not isinstance(part, dict) or not all(isinstance(k, str) and k.isidentifier() for k in part):
            raise ForbiddenGlobalError("parameter state must be a dict of attribute names")
        dunder = [k for k in part if k.startswith("__")]
        if dunder:
            raise ForbiddenGlobalError(f"parameter state sets reserved attributes {dunder}")
    return torch._utils._rebuild_parameter_with_state(data, requires_grad, backward_hooks, state)


_ALLOWED_CALLABLES: dict[str, Callable[..., Any] | type] = {
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state_checked,
    "torch.device": torch.device,  # DataParallel.src_device_obj of a GPU-saved model
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "__builtin__.set": set,  # protocol-2 spelling of builtins.set
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only answers from the allow-list. Storage classes never reach
    it: ``torch.load`` resolves them and ``map_location`` moves them to the CPU."""

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in PUBLISHED_MODULE_CLASSES or full in TORCH_NN_MODULE_CLASSES:
            return _stand_in(full)
        if full in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[full]
        raise ForbiddenGlobalError(f"the pickle names {full}, which is not on the allow-list of pcm-AstroMAE "
                                   "checkpoint classes and torch rebuild functions; refusing to load it (nothing was "
                                   "imported)")


# torch.load(pickle_module=...) needs an object with Unpickler and load (legacy format).
_RESTRICTED_PICKLE = types.ModuleType("cosmic_utils.model._restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
_RESTRICTED_PICKLE.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()  # type: ignore[attr-defined]
_RESTRICTED_PICKLE.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]

_MAX_DEPTH = 64


def _collect_tensors(module: nn.Module, prefix: str, out: OrderedDict[str, Tensor], path: tuple[int, ...],
                     source: str) -> None:
    """Walk a stand-in tree like ``nn.Module.state_dict`` does (no de-duplication of shared modules)."""
    if id(module) in path or len(path) > _MAX_DEPTH:
        raise CheckpointError(f"{source}: module tree is cyclic or deeper than {_MAX_DEPTH} at '{prefix}'")
    state = module.__dict__
    params = state.get("_parameters") or {}
    buffers = state.get("_buffers") or {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    children = state.get("_modules") or {}
    for kind, table in (("parameter", params), ("buffer", buffers)):
        for name, tensor in table.items():
            if tensor is None or (kind == "buffer" and name in non_persistent):
                continue
            if not isinstance(tensor, Tensor):
                raise CheckpointError(f"{source}: {kind} {prefix}{name} is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, StandInModule):
            raise CheckpointError(f"{source}: submodule {prefix}{name} is a {type(child).__name__}, not a module")
        _collect_tensors(child, f"{prefix}{name}.", out, (*path, id(module)), source)


def load_published_checkpoint(path: PathLike, *, trust: bool = False,
                              validate: bool = True) -> OrderedDict[str, Tensor]:
    """Tensors of the published pickled checkpoint by bare state_dict key, on the CPU (validated with
    ``validate``). Without ``trust=True`` it refuses before reading the file; with it,
    :class:`RestrictedUnpickler` reads it (anything off the allow-list raises ``ForbiddenGlobalError``)."""
    file = Path(path)
    if not trust:
        raise UntrustedPickleError(
            f"{file}: refusing to unpickle without trust. The published checkpoint is a pickle of "
            "whole model objects, and unpickling runs instructions stored in the file; a pickle "
            "from an untrusted source can execute code. Our loader allows only an explicit list "
            "of model classes (as inert stand-ins) and torch rebuild functions, but whether to "
            "open the file is your decision: pass trust=True (command line: --trust-pickle) only "
            "for a file whose origin you trust (e.g. checked against a published sha256)."
        )
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such checkpoint file")
    try:
        obj = torch.load(file, map_location="cpu", pickle_module=_RESTRICTED_PICKLE, weights_only=False)
    except ForbiddenGlobalError as err:
        raise ForbiddenGlobalError(f"{file}: {err}") from None
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{file}: cannot be unpickled as the published checkpoint: {err}") from err
    source = str(file)
    if isinstance(obj, StandInModule):
        collected: OrderedDict[str, Tensor] = OrderedDict()
        _collect_tensors(obj, "", collected, (), source)
        state = normalize_state_dict(collected, source)
    elif isinstance(obj, Mapping):  # a state_dict saved with torch.save: fine as well
        state = normalize_state_dict(obj, source)
    else:
        raise CheckpointError(f"{file}: unpickled a {type(obj).__name__}, expected the model or a state_dict")
    if validate:
        validate_state_dict(state, source)
    return state
