"""``cosmic bench`` verdicts, summary and printed table, from a bench document alone.

:func:`mark_verdicts` says per row whether an engine is accurate, faster than its fp32 counterpart and
usable; :func:`summarize` picks the best engines and the Lambda's ONNX engine per thread count;
:func:`format_table` is what ``cosmic bench`` prints. Reasoning: docs/bench.md "Verdicts".
"""

from __future__ import annotations

from typing import Any

from cosmic_utils.inference.bench_plan import SUMMARY_BATCH
from cosmic_utils.runtime import gating

#: The Lambda's choice is made at this thread count: 1,769 MB is one vCPU.
LAMBDA_THREADS: int = 1


def mark_verdicts(rows: list[dict[str, Any]]) -> None:
    """Add ``accurate``, ``speed_vs_fp32``, ``faster_than_fp32`` and ``usable`` to every engine row
    (fp32 engines: accurate and usable by definition; the rules for reduced ones: docs/bench.md)."""
    speed = {(r["engine"], r["batch_size"], r.get("threads")): r["samples_per_s"] for r in rows}
    for r in rows:
        if r["engine"] == "published-loop":
            continue
        if r["precision"] == "fp32":
            r.update(accurate=True, speed_vs_fp32=None, faster_than_fp32=None, usable=True)
            continue
        base = speed.get((gating.FP32_FALLBACK.get(r["engine"], ""), r["batch_size"], r.get("threads")))
        ratio = r["samples_per_s"] / base if base else None
        r["accurate"] = bool(r.get("check_passed")) and bool(r.get("calibration_passed"))
        r["speed_vs_fp32"] = ratio
        r["faster_than_fp32"] = bool(ratio is not None and ratio > 1.0)
        r["usable"] = bool(r["accurate"] and r["faster_than_fp32"]
                           and not gating.speed_refusal(r["engine"], r["precision"]))


def engine_verdicts(doc: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per engine at the summary batch size: accurate (numbers), faster (ratio), usable, and why not."""
    checks = {c["engine"]: c for c in doc.get("checks", [])}
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("precision") == "fp32":
            continue
        c = checks.get(r["engine"], {})
        why = []
        if not r.get("check_passed"):
            why.append(f"bench check failed ({gating.describe(c)})" if c else "no bench check")
        cal = c.get("calibration")
        if cal is None:
            why.append(c.get("gate_error") or "no calibration set in the artifact (re-export it)")
        elif not cal.get("passed"):
            why.append(f"calibration check failed (max |dz| {cal['max_abs_dz']:.2e}, "
                       f"sigma_NMAD {100 * (cal['nmad_delta_rel'] or 0):+.1f} %)")
        if c.get("gate_refusal"):
            why.append(c["gate_refusal"])
        if r.get("faster_than_fp32") is False:
            why.append(f"not faster than {gating.FP32_FALLBACK.get(r['engine'])} ({r['speed_vs_fp32']:.2f}x)")
        out[r["engine"]] = {
            "accurate": r.get("accurate"), "nmad_delta_rel": r.get("nmad_delta_rel"), "max_abs_dz": r.get("max_abs_dz"),
            "calibration": cal, "faster_than_fp32": r.get("faster_than_fp32"), "speed_vs_fp32": r.get("speed_vs_fp32"),
            "usable": r.get("usable"), "why_not": "; ".join(why),
        }
    return out


def lambda_choice(rows: list[dict[str, Any]], verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ONNX engine for the inference Lambda on this CPU type (``onnx-int8`` when usable here, else
    ``onnx``), why, and ``int8_request_gets``: what a run asking for ``onnx-int8`` is served (the gate decides)."""
    v = verdicts.get("onnx-int8")
    if v is None:
        return {"engine": "onnx", "why": "onnx-int8 was not measured in this run", "int8_request_gets": None}
    cal = v.get("calibration") or {}
    gets = "onnx-int8" if cal.get("passed") else "onnx"
    if v.get("usable"):
        why = f"onnx-int8 is accurate on this CPU and {v['speed_vs_fp32']:.2f}x onnx"
    elif not cal.get("passed"):
        why = f"onnx-int8 is refused at cold start on this CPU: {v['why_not']}"
    else:
        why = f"onnx-int8 passes its calibration gate here but is not chosen: {v['why_not']}"
    return {"engine": "onnx-int8" if v.get("usable") else "onnx", "why": why, "int8_request_gets": gets}


def _summarize_rows(doc: dict[str, Any], all_rows: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """Best fp32, best usable reduced, verdicts and the Lambda's ONNX engine among ``all_rows``
    (one thread count) at ``batch_size`` (else the largest batch measured)."""
    rows = [r for r in all_rows if r["batch_size"] == batch_size and r["engine"] != "published-loop"]
    if not rows:
        bs = max((r["batch_size"] for r in all_rows), default=None)
        rows = [r for r in all_rows if r["batch_size"] == bs and r["engine"] != "published-loop"]
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    reduced = [r for r in rows if r["precision"] != "fp32" and r.get("usable")]
    best_fp32 = max(fp32, key=lambda r: r["samples_per_s"], default=None)
    best_red = max(reduced, key=lambda r: r["samples_per_s"], default=None)
    out: dict[str, Any] = {"batch_size": rows[0]["batch_size"] if rows else None}
    if best_fp32:
        out["best_fp32"] = {k: best_fp32[k] for k in ("engine", "samples_per_s", "ratio_vs_published_loop",
                                                       "gflops", "peak_fraction")}
        out["fp32_ratio_target_2x"] = best_fp32["ratio_vs_published_loop"] >= 2.0
        out["fp32_peak_target_70pct"] = best_fp32["peak_fraction"] >= 0.70
    if best_red:
        out["best_reduced"] = {k: best_red[k] for k in ("engine", "precision", "samples_per_s",
                                                         "ratio_vs_published_loop", "nmad_delta_rel", "speed_vs_fp32")}
        out["reduced_ratio_target_3_5x"] = best_red["ratio_vs_published_loop"] >= 3.5
    out["engines"] = engine_verdicts(doc, rows)
    lam = lambda_choice(rows, out["engines"])
    row = next((r for r in rows if r["engine"] == lam.get("engine")), None)  # the chosen engine's speed
    out["lambda_engine"] = {**lam, "samples_per_s": row["samples_per_s"] if row else None,
                            "ratio_vs_published_loop": row["ratio_vs_published_loop"] if row else None}
    onnx = next((r for r in rows if r["engine"] == "onnx"), None)
    int8 = next((r for r in rows if r["engine"] == "onnx-int8"), None)
    # the Lambda's targets: fp32 ONNX >= 2x and a usable reduced ONNX engine >= 3x the published loop
    out["lambda_fp32_ratio_target_2x"] = bool(onnx and onnx["ratio_vs_published_loop"] >= 2.0) if onnx else None
    out["lambda_reduced_ratio_target_3x"] = (bool(int8.get("usable") and int8["ratio_vs_published_loop"] >= 3.0)
                                             if int8 else None)
    return out


def summarize(doc: dict[str, Any], batch_size: int = SUMMARY_BATCH) -> dict[str, Any]:
    """The summary of a bench document at ``batch_size``: ``by_threads`` {"1": {...}, "2": {...}} and, at
    the top level, the largest thread count's, except ``lambda_engine``, decided at :data:`LAMBDA_THREADS`
    when measured (docs/bench.md "Verdicts")."""
    meta = doc.get("meta") or {}
    default_t = meta.get("threads")
    for r in doc["rows"]:
        r.setdefault("threads", default_t)
    if doc["rows"] and any("usable" not in r for r in doc["rows"] if r["engine"] != "published-loop"):
        mark_verdicts(doc["rows"])
    counts = sorted({r["threads"] for r in doc["rows"] if r.get("threads") is not None}, reverse=True)
    by_threads = {str(t): _summarize_rows(doc, [r for r in doc["rows"] if r.get("threads") == t], batch_size)
                  for t in counts}
    head_t = counts[0] if counts else default_t
    out: dict[str, Any] = dict(by_threads.get(str(head_t)) or _summarize_rows(doc, doc["rows"], batch_size))
    out["threads"] = head_t
    lam_t = LAMBDA_THREADS if str(LAMBDA_THREADS) in by_threads else head_t
    if str(lam_t) in by_threads:
        out["lambda_engine"] = {**by_threads[str(lam_t)]["lambda_engine"], "threads": lam_t,
                                "basis": (f"threads={lam_t}: a 1,769 MB Lambda has one vCPU" if lam_t == LAMBDA_THREADS
                                          else f"threads={lam_t} (no 1-thread rows in this run)")}
    out["by_threads"] = by_threads
    out["cpu_type"] = meta.get("cpu_type")
    out["checks_on_trained_model"] = bool(meta.get("trained_model"))
    return out


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def format_table(doc: dict[str, Any]) -> str:
    """What ``cosmic bench`` prints: the CPU probe, one table per thread count, the verdicts, the
    Lambda's engine and why, the phase times and the total."""
    meta = doc["meta"]
    summary = doc.get("summary") or {}
    lines = [f"CPU (measured probe): {meta.get('cpu_model')}; vendor {meta.get('cpu_vendor')}; isa {meta.get('isa')}"
             + (f", caps {meta['isa_caps']}" if meta.get("isa_caps") else "") + f"; cpu_type {meta.get('cpu_type')}"]
    head = (f"{'engine':<15}{'prec':<6}{'batch':>6}{'samples/s':>11}{'x pub':>7}{'GFLOP/s':>9}{'peak':>7}"
            f"{'p50 ms':>9}{'nmad d%':>9}{'max|dz|':>10}{'check':>7}{'thr':>5}")
    counts = sorted({r.get("threads", meta.get("threads")) for r in doc["rows"]}, reverse=True)
    peaks = meta.get("matmul_peak_gflops_by_threads") or {}
    for t in counts:
        peak = peaks.get(str(t), meta.get("matmul_peak_gflops") if t == meta.get("threads") else None)
        lines += ["", f"threads={t} (measured; x pub = vs the published loop at {t} thread(s), same run"
                  + (f"; fp32 matmul peak {peak:.0f} GFLOP/s" if peak else "") + ")", head, "-" * len(head)]
        for r in (r for r in doc["rows"] if r.get("threads", meta.get("threads")) == t):
            nd, md, chk = r.get("nmad_delta_rel"), r.get("max_abs_dz"), r.get("check_passed")
            lines.append(
                f"{r['engine']:<15}{r['precision']:<6}{r['batch_size']:>6}{r['samples_per_s']:>11.1f}"
                f"{r['ratio_vs_published_loop']:>7.2f}{r['gflops']:>9.1f}{r['peak_fraction']:>7.1%}{r['batch_p50_ms']:>9.1f}"
                f"{100 * _nan(nd):>9.2f}{_nan(md):>10.2e}"
                f"{('pass' if chk else 'FAIL') if chk is not None else '':>7}{str(r.get('threads_observed', '')):>5}")
    lines.append("")
    lines.append(f"{meta['flops_per_sample'] / 1e6:.1f} MFLOP/sample; model "
                 + ("trained" if meta['trained_model'] else "UNTRAINED (checks not meaningful)")
                 + "; accuracy checks once per engine at "
                 + f"{meta.get('threads')} threads (thr = threads the engine really ran with)")
    for t, sub in (summary.get("by_threads") or {str(meta.get("threads")): summary}).items():
        if not sub.get("engines"):
            continue
        lines.append(f"verdicts at threads={t}, batch {sub['batch_size']}:")
        for name, v in sub["engines"].items():
            cal = v.get("calibration") or {}
            acc = (f"accurate {'yes' if v['accurate'] else 'NO'} (bench sigma_NMAD "
                   f"{100 * _nan(v['nmad_delta_rel']):+.2f} %, max|dz| {_nan(v['max_abs_dz']):.2e}; calibration "
                   + (f"max|dz| {cal['max_abs_dz']:.2e} {'pass' if cal.get('passed') else 'FAIL'}" if cal else "none")
                   + ")")
            ratio = v.get("speed_vs_fp32")
            fast = f"faster {'yes' if v.get('faster_than_fp32') else 'no'} ({ratio:.2f}x fp32)" if ratio else "faster ?"
            lines.append(f"  {name:<11} {acc}; {fast} -> {'used by default when fastest' if v['usable'] else 'not used'}"
                         + (f": {v['why_not']}" if v.get("why_not") else ""))
        lam = sub.get("lambda_engine") or {}
        if lam.get("samples_per_s"):
            lines.append(f"  Lambda engine at threads={t}: {lam.get('engine')} {lam['samples_per_s']:.1f} samples/s, "
                         f"{lam['ratio_vs_published_loop']:.2f}x the published loop (targets: onnx fp32 >= 2x "
                         f"{_yn(sub.get('lambda_fp32_ratio_target_2x'))}, reduced >= 3x "
                         f"{_yn(sub.get('lambda_reduced_ratio_target_3x'))})")
    lam = summary.get("lambda_engine") or {}
    if lam:
        lines.append(f"Lambda (ONNX only) on this CPU: {lam.get('engine')}"
                     + (f", decided at {lam['basis']}" if lam.get("basis") else "") + f" - {lam.get('why')}"
                     + (f"; a run asking for onnx-int8 is served {lam['int8_request_gets']}"
                        if lam.get("int8_request_gets") else ""))
    if doc.get("stream"):
        s = doc["stream"]
        lines.append(f"streaming {s['data_gb']:.3f} GB with {s['engine']} (batch {s['batch_size']}): "
                     f"{s['samples_per_s']:.0f} samples/s, peak RSS {s['peak_rss_mb']:.0f} MB "
                     f"({'<' if s['peak_rss_ok'] else '>='} {s['peak_rss_target_mb']:.0f} MB target)")
    phases = meta.get("phases_s") or {}
    if phases:
        est = meta.get("estimated_s") or {}
        lines.append("phases (measured s" + (", ESTIMATED before the speed phase in brackets" if est else "") + "): "
                     + ", ".join(f"{k} {v:.1f}" + (f" [{est[k]:.0f}]" if k in est else "")
                                 for k, v in phases.items() if k != "total_s")
                     + f"; total {phases.get('total_s', meta.get('elapsed_s', float('nan'))):.1f} s")
        comp = {t: v for t, v in (meta.get("compile_s_by_threads") or {}).items() if v}
        if comp:
            lines.append("compile time (not in samples/s): " + "; ".join(
                f"threads={t}: " + ", ".join(f"{e} " + ", ".join(f"shape {sh} {sec:.1f} s" for sh, sec in shapes.items())
                                             for e, shapes in v.items()) for t, v in comp.items()))
        trimmed = (meta.get("budget") or {}).get("trimmed")
        if trimmed:
            lines.append(f"budget {meta['budget']['budget_s']:.0f} s: trimmed {', '.join(trimmed)}")
    return "\n".join(lines)


def _yn(value: Any) -> str:
    return "n/a" if value is None else ("met" if value else "NOT met")
