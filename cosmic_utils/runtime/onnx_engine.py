"""ONNX Runtime engines (fp32 and dynamically quantised int8): numpy + onnxruntime, never torch.

The engine the inference Lambda runs; ``model.onnx`` holds preprocessing + network, so it feeds
raw partition arrays. An older graph form serves with a warning; a stale int8 graph is refused in
Lambda. Session choices (``ORT_ENABLE_ALL``, no spinning, 64-row micro-batches run row-parallel),
the int8 variants and their measurements: docs/inference.md "The Lambda engine",
docs/portability.md "Reduced-precision engines across CPUs".
"""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cosmic_utils.runtime.artifact import (
    CALIBRATION_FILE,
    ONNX_GRAPH_FORM,
    ROLE_ONNX,
    ROLE_ONNX_INT8,
    ArtifactError,
    ModelArtifact,
    onnx_graph_form,
    sha256_file,
)
from cosmic_utils.runtime.engine import ONNX_ENGINE_NAMES, Engine, artifact_meta, resolve_threads
from cosmic_utils.runtime.gating import gated
from cosmic_utils.runtime.storage import replacing

log = logging.getLogger(__name__)

INT8_SUFFIX = ".int8.onnx"
#: ``artifact.json`` entry recording which ``model.onnx`` (sha256) and variant the int8 graph was made from.
INT8_META_KEY = "onnx_int8"


def onnx_model_path(artifact_dir: str | os.PathLike[str]) -> Path:
    """The ONNX graph file of an artifact folder (``files.onnx.path`` in artifact.json)."""
    folder = Path(artifact_dir)
    rel = ((artifact_meta(folder, missing_ok=True).get("files") or {}).get("onnx") or {}).get("path", "model.onnx")
    path = folder / rel
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {folder}: ONNX graph {rel} not found (run `cosmic model export`)")
    return path


def _weight_matmuls(model: Any) -> tuple[list[str], list[str]]:
    """Names of MatMul/Gemm nodes with a constant weight input, and of the other MatMuls."""
    consts = ({i.name for i in model.graph.initializer}
              | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output})
    matmuls = [(n.name, len(n.input) > 1 and n.input[1] in consts) for n in model.graph.node
               if n.op_type in ("MatMul", "Gemm")]
    return [name for name, w in matmuls if w], [name for name, w in matmuls if not w]


#: Activations uint8 x weights int8 / int8 in 7 bits / uint8 (dynamic), or static QDQ (calibrated
#: on ``calibration.npz``; no faster, less accurate): docs/inference.md, docs/portability.md.
INT8_VARIANTS: tuple[str, ...] = ("u8s8", "u8s8-reduce-range", "u8u8", "qdq-static")
#: The default: 7-bit weights cannot saturate ``VPMADDUBSW`` (docs/portability.md has the numbers).
INT8_VARIANT: str = "u8s8-reduce-range"
#: metadata_props key of the variant in a quantised graph, so a cached graph of another variant is redone.
VARIANT_KEY = "cosmic_int8_variant"


def _graph_variant(path: Path) -> str | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable cache file: redo it
        return None
    return next((p.value for p in model.metadata_props if p.key == VARIANT_KEY), None)


def quantize_onnx_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None,
                       variant: str = INT8_VARIANT) -> Path:
    """Write an int8 copy of ``src`` (weight MatMul/Gemm only) as ``variant``; returns its path (default
    ``model.int8.onnx`` beside ``src``, else a temp file keyed by its sha256; a newer one is reused)."""
    import onnx

    if variant not in INT8_VARIANTS:
        raise ValueError(f"int8 variant must be one of {INT8_VARIANTS}, got {variant!r}")
    src = Path(src)
    if dst is None:
        dst = src.with_name(src.name[: -len(".onnx")] + INT8_SUFFIX)
        if not os.access(src.parent, os.W_OK):
            dst = Path(tempfile.gettempdir()) / f"cosmic-int8-{sha256_file(src)[:16]}-{variant}{INT8_SUFFIX}"
    dst = Path(dst)
    if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime and _graph_variant(dst) == variant:
        return dst
    weight, other = _weight_matmuls(onnx.load(str(src)))
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantiser logs one INFO line per tensor to root
    try:
        with replacing(dst) as tmp:
            _run_quantiser(variant, src, Path(tmp), other)
            stamp_graph(Path(tmp), {VARIANT_KEY: variant})
    finally:
        root.setLevel(level)
    log.info("quantised %s -> %s (%s, %d weight MatMul/Gemm nodes int8)", src, dst, variant, len(weight))
    return dst


def stamp_graph(path: Path, props: dict[str, str]) -> None:
    """Add metadata entries to a saved ONNX graph (rewritten in place, atomically)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **props})
    with replacing(path) as tmp:
        onnx.save(model, tmp)


def _run_quantiser(variant: str, src: Path, dst: Path, exclude: list[str]) -> None:
    """Quantise ``src`` into ``dst`` as ``variant`` (see :func:`quantize_onnx_int8`), weight Gemms only."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant == "qdq-static":
        _quantize_static(src, dst, exclude)
    else:
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QUInt8 if variant == "u8u8" else QuantType.QInt8,
            per_channel=True, reduce_range=(variant == "u8s8-reduce-range"),
            op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude,
            extra_options={"MatMulConstBOnly": True},
        )


def _quantize_static(src: Path, dst: Path, exclude: list[str], batch: int = 64) -> None:
    """Static QDQ int8 of the weight MatMul/Gemm nodes, activation ranges from ``calibration.npz``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    cal_path = src.parent / CALIBRATION_FILE
    if not cal_path.is_file():
        raise ArtifactError(f"static int8 needs the calibration set {cal_path} next to {src.name}")
    with np.load(cal_path, allow_pickle=False) as npz:
        image = np.ascontiguousarray(npz["image"], dtype=np.float32)
        magnitude = np.ascontiguousarray(npz["magnitude"], dtype=np.float64)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter({"image": image[s:s + batch], "magnitude": magnitude[s:s + batch]}
                               for s in range(0, len(image), batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def int8_model_path(artifact_dir: str | os.PathLike[str]) -> Path:
    """The listed ``files.onnx_int8`` graph (what a Lambda downloads), else ``model.onnx`` quantised now."""
    folder = Path(artifact_dir)
    meta = artifact_meta(folder, missing_ok=True)
    files = meta.get("files") or {}
    listed = (files.get(ROLE_ONNX_INT8) or {}).get("path")
    if listed and (folder / listed).is_file():
        made_from = (meta.get(INT8_META_KEY) or {}).get("source_sha256")
        # None: registered before sources were recorded, together with the model.onnx it lists
        if made_from is None or made_from == (files.get(ROLE_ONNX) or {}).get("sha256"):
            return folder / listed
        # quantised from another model.onnx (an older export): never serve it
        try:
            import onnx  # noqa: F401  (quantising needs it; the Lambda zip does not ship it)
        except ImportError as exc:
            raise ArtifactError(
                f"model artifact {folder}: {listed} was quantised from another model.onnx than the one listed "
                "(stale int8 graph); re-export the artifact with `cosmic model export` and deploy it again") from exc
        log.warning("model artifact %s: %s is stale (made from another model.onnx); quantising again", folder, listed)
    return quantize_onnx_int8(onnx_model_path(folder))


def register_int8(artifact_dir: str | os.PathLike[str]) -> Path:
    """Quantise ``model.onnx`` (if needed) and list it as ``files.onnx_int8`` in ``artifact.json``."""
    path = quantize_onnx_int8(onnx_model_path(artifact_dir))
    if path.parent != Path(artifact_dir):
        raise ValueError(f"model artifact {artifact_dir} is read-only: int8 graph cached at {path}")
    art = ModelArtifact.load(artifact_dir, verify=False)
    art.add_file(ROLE_ONNX_INT8, path.name)
    art.extra[INT8_META_KEY] = {"source_sha256": art.files[ROLE_ONNX]["sha256"], "variant": _graph_variant(path)}
    art.save()
    return path


#: Graph optimisation levels by name (``OnnxEngine(optimization=...)``).
OPTIMIZATION_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
SPINNING_KEY = "session.intra_op.allow_spinning"


def session_options(threads: int, spinning: bool = False, optimization: str = "all") -> ort.SessionOptions:
    """Session options: ``threads`` intra-op threads, one inter-op, sequential."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {sorted(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry(SPINNING_KEY, "1" if spinning else "0")
    return opts


#: Rows per ``session.run`` (module doc: a batch is run in micro-batches of this size).
DEFAULT_CHUNK: int = 64
#: How an engine with several threads uses them (module doc): concurrent micro-batches or intra-op threads.
PARALLEL_MODES: tuple[str, ...] = ("rows", "intra")


class OnnxEngine(Engine):
    """ONNX Runtime CPU session on an artifact's graph. ``chunk``: rows per ``session.run`` (0: whole
    batch); ``parallel="rows"``: micro-batches on ``threads`` Python threads, ``"intra"``: intra-op."""

    framework = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, int8: bool = False,
                 spinning: bool = False, optimization: str = "all", chunk: int | None = DEFAULT_CHUNK,
                 parallel: str = "rows") -> None:
        if parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {parallel!r}")
        self.threads = resolve_threads(threads)
        self.chunk = int(chunk) if chunk else 0
        # row-parallel: one intra-op thread per session.run, ``threads`` runs at once
        self.parallel = parallel if self.threads > 1 else "intra"
        self.workers = self.threads if self.parallel == "rows" else 1
        self._pool: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cosmic-ort")
            if self.workers > 1 else None)
        self.name = "onnx-int8" if int8 else "onnx"
        self.precision = "int8" if int8 else "fp32"
        self.path = Path(path)
        self.graph_form: str | None = None  # set by from_artifact (artifact.json's onnx_export.graph_form)
        opts = session_options(1 if self.parallel == "rows" else self.threads, spinning=spinning,
                               optimization=optimization)
        self.session: ort.InferenceSession | None = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self.session.get_inputs()]
        if len(inputs) != 2:
            raise ValueError(f"ONNX graph {self.path}: expected 2 inputs (image, magnitude), got {inputs}")
        self.input_names = ("image", "magnitude") if set(inputs) == {"image", "magnitude"} else tuple(inputs)
        self.output_name = self.session.get_outputs()[0].name

    @classmethod
    def from_artifact(cls, artifact_dir: str | os.PathLike[str], threads: int | None = None,
                      int8: bool = False, **kwargs: Any) -> OnnxEngine:
        """The engine on ``<artifact_dir>/model.onnx`` (its int8 copy when ``int8``)."""
        path = int8_model_path(artifact_dir) if int8 else onnx_model_path(artifact_dir)
        engine = cls(path, threads=threads, int8=int8, **kwargs)
        meta = artifact_meta(artifact_dir, missing_ok=True)
        engine.graph_form = onnx_graph_form(meta)
        if meta and engine.graph_form != ONNX_GRAPH_FORM:
            # a correct but slower graph (the eager network): serve it, and say how to get the fast one
            log.warning("model artifact %s: model.onnx is graph form %s, this code exports %s (faster); "
                        "re-export it with `cosmic model export --model %s`", artifact_dir, engine.graph_form,
                        ONNX_GRAPH_FORM, artifact_dir)
        return engine

    def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise RuntimeError(f"engine {self.name} is closed")
        image, magnitude = self.check_inputs(image, magnitude)
        n = image.shape[0]
        step = self.chunk or max(n, 1)
        if self.workers > 1:  # every worker gets rows, even when the batch is smaller than workers x chunk
            step = max(1, min(step, -(-n // self.workers)))
        out = np.empty(n, dtype=np.float32)
        session = self.session

        def run(start: int) -> None:
            feeds = {self.input_names[0]: np.ascontiguousarray(image[start:start + step]),
                     self.input_names[1]: np.ascontiguousarray(magnitude[start:start + step])}
            out[start:start + step] = np.asarray(session.run([self.output_name], feeds)[0],
                                                 dtype=np.float32).reshape(-1)

        starts = range(0, n, step)
        if self._pool is not None and len(starts) > 1:
            list(self._pool.map(run, starts))  # re-raises a worker's error here
        else:
            for start in starts:
                run(start)
        return out

    def close(self) -> None:
        self.session = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def create_onnx_engine(name: str, artifact_dir: str | os.PathLike[str], threads: int | None = None,
                       gate: bool = True) -> OnnxEngine:
    """The ONNX engine ``name`` (``onnx`` / ``onnx-int8``) on a model folder, gated unless ``gate``."""
    if name not in ONNX_ENGINE_NAMES:
        raise ValueError(f"unknown ONNX engine {name!r}; choose one of {', '.join(ONNX_ENGINE_NAMES)}")
    engine = OnnxEngine.from_artifact(artifact_dir, threads=threads, int8=(name == "onnx-int8"))
    return gated(engine, name, artifact_dir, gate)
