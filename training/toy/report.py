"""What the demo writes: the sample grid (``grid.png``), the metrics text (``metrics.md``, also printed) and the
numbers (``metrics.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .evaluation import RoutingMass, Score

GRID_TILE = 96  # px of one grid tile
PAIRED = {"binding": "binding", "both_colors": "both colours"}  # with − without L_route, paired bootstrap
CURVE_METRICS = ("fidelity", "color", "binding", "both_colors")


@dataclass
class DemoEvaluation:
    """Everything the demo measured. results: {run: {mode: {metric: Score}}}; diffs: {metric: (with − without,
    lo, hi)}; mass: {run: RoutingMass}; mass_diff: (lo, hi); curves: {run: [{step, metric...}]}; base_curve:
    [{step, metric...}] (empty without base snapshots)."""

    results: dict[str, dict[str, dict[str, Score]]]
    diffs: dict[str, tuple[float, float, float]]
    mass: dict[str, RoutingMass]
    mass_diff: tuple[float, float]
    curves: dict[str, list[dict]]
    base_curve: list[dict]


def tile(native: np.ndarray, px: int = GRID_TILE) -> np.ndarray:
    """A native image (h, w, 3) in [0, 1] or uint8 -> uint8 (px, px, 3) by pixel repetition, centred on white."""
    img = native if native.dtype == np.uint8 else (np.clip(native, 0, 1) * 255).round().astype(np.uint8)
    rep = px // max(img.shape[:2])
    img = img.repeat(rep, 0).repeat(rep, 1)
    out = np.full((px, px, 3), 255, np.uint8)
    y, x = (px - img.shape[0]) // 2, (px - img.shape[1]) // 2
    out[y : y + img.shape[0], x : x + img.shape[1]] = img
    return out


def write_grid(path: Path, rows: list[list[np.ndarray]]) -> None:
    """Rows of equally many tiles -> one PNG with 4-px white gutters."""
    pad = 4
    lines = [np.concatenate([np.pad(t, ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for t in r], 1)
             for r in rows]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    Image.fromarray(np.concatenate(lines, 0)).save(path)


def table(rows: list[tuple[str, dict[str, Score]]], diffs: dict[str, tuple[float, float, float]]) -> str:
    """The markdown metrics table: one (label, scores) per row, then the paired differences."""
    lines = ["| run | fidelity, 1 ref (colour + shape) | + pattern | colour only | binding, 2 refs | swaps | "
             "both colours |", "|---|---|---|---|---|---|---|"]
    for label, s in rows:
        lines.append(f"| {label} | {s['fidelity'].text()} | {s['fidelity_pattern'].text()} | {s['color'].text()} | "
                     f"{s['binding'].text()} | {s['swap'].text()} | {s['both_colors'].text()} |")
    lines.append("")
    lines += [f"{PAIRED[k]} with − without L_route: {d[0]:+.2f}, paired bootstrap 95% [{d[1]:+.2f}, {d[2]:+.2f}]"
              for k, d in diffs.items()]
    return "\n".join(lines)


def curve_text(curve: list[dict]) -> str:
    """``step: fidelity / colour only / binding / both colours, ...`` (step None: ``final``)."""
    return ", ".join(f"{c['step'] or 'final'}: " + " / ".join(f"{c[k]:.2f}" for k in CURVE_METRICS) for c in curve)


def metrics_markdown(ev: DemoEvaluation, rows: list[tuple[str, str, str]], runs: tuple[str, str], cases: int) -> str:
    """The whole metrics text (``metrics.md`` and the printout): the table, routing mass, the learning curves and
    the base curve. rows: (label, run, mode) of the table; runs: (with, without) L_route."""
    with_, without = runs
    md = table([(label, ev.results[run][mode]) for label, run, mode in rows], ev.diffs)
    md += ("\n\nattention routing (share of each reference's image attention on its own subject; held-out "
           "two-subject scenes at sigma 0.5, the layers L_route trains): "
           + ", ".join(f"{name} {m.mass.mean():.2f}" for name, m in ev.mass.items())
           + f", uniform attention {ev.mass[with_].chance.mean():.2f}; with − without "
           f"{ev.mass[with_].mass.mean() - ev.mass[without].mass.mean():+.2f}, paired bootstrap 95% "
           f"[{ev.mass_diff[0]:+.2f}, {ev.mass_diff[1]:+.2f}]")
    md += ("\n\nlearning curve (24 + 24 held-out scenes, seed 0), step: fidelity / colour only / binding / both "
           "colours\n") + "\n".join(f"- {name}: {curve_text(curve)}" for name, curve in ev.curves.items())
    if ev.base_curve:
        md += ("\n\nbase curve (the toy base alone, training subjects in words, "
               f"{cases} + {cases} scenes, seed 0), base step: "
               "fidelity / colour only / binding / both colours\n- " + curve_text(ev.base_curve))
    return md


def metrics_summary(ev: DemoEvaluation, runs: tuple[str, str], timings: dict[str, float]) -> dict:
    """``metrics.json``: every rate with its interval and count, the paired differences, routing mass, the
    curves and the phases' wall times."""
    with_ = runs[0]
    summary = {run: {mode: {k: {"rate": s.rate, "ci95": s.interval(), "n": len(s.outcomes)} for k, s in m.items()}
                     for mode, m in by.items()} for run, by in ev.results.items()}
    summary.update({f"{k}_difference": {"value": d[0], "ci95": d[1:]} for k, d in ev.diffs.items()})
    summary["routing_mass"] = {**{name: float(m.mass.mean()) for name, m in ev.mass.items()},
                               "uniform": float(ev.mass[with_].chance.mean()), "difference_ci95": ev.mass_diff}
    summary["learning_curve"] = ev.curves
    summary["base_curve"] = ev.base_curve
    summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    return summary
