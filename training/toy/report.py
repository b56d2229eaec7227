"""What the toy's main job and its retraining write: the measured numbers (``Measurement`` -> ``metrics.json``), the
tables (``metrics.md``, also printed) and the labelled sample grid (``grid.png``).

Every rate of a run kind (placed with / without L_route, diagonal) is reported over the training seeds: the mean
of the per-seed rates with Student's t 95 % interval across seeds (what a rerun of the training lands in), next to
the per-seed rates. Comparisons are paired: the same cases and sampling noise in every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .metrics import bootstrap_difference, mean_interval, seed_interval

TARGETS = {"accuracy": 0.9, "binding": 0.8, "retrieval": 0.95}  # issue 24's targets, held-out identities
SINGLE = (("accuracy", "cell accuracy, 1 ref"), ("exact", "≥ 90 % cells"), ("retrieval", "retrieval (of 10)"))
PAIRS = (("binding", "binding, 2 refs"), ("blend", "blend"), ("swap", "swap"), ("both_exact", "both ≥ 90 %"),
         ("pair_accuracy", "cell accuracy, 2 refs"))


@dataclass
class Measurement:
    """Per-sample values: ``runs[run name][metric]`` (refs mode), ``kinds[kind] = [run names]`` (one per seed),
    ``text_only`` (one model without references: accuracy and chance_accuracy), ``mass[run name]`` (routing mass
    per reference and case) and ``chance_mass``."""

    runs: dict[str, dict[str, list[float]]]
    kinds: dict[str, list[str]]
    text_only: dict[str, list[float]]
    mass: dict[str, list[float]]
    chance_mass: list[float]
    timings: dict[str, float] = field(default_factory=dict)

    def seed_rates(self, kind: str, metric: str) -> list[float]:
        return [float(np.mean(self.runs[r][metric])) for r in self.kinds[kind]]

    def rate(self, kind: str, metric: str) -> tuple[float, float, float]:
        """(mean over seeds, lo, hi): Student's t across the training seeds."""
        return seed_interval(self.seed_rates(kind, metric))

    def paired(self, a: str, b: str, metric: str) -> list[tuple[float, float, float]]:
        """Per seed: (mean(a) - mean(b), bootstrap lo, hi) of kind a's and b's run of that seed (paired samples)."""
        out = []
        for ra, rb in zip(self.kinds[a], self.kinds[b]):
            x, y = np.array(self.runs[ra][metric]), np.array(self.runs[rb][metric])
            out.append((float(x.mean() - y.mean()), *bootstrap_difference(x, y)))
        return out

    def mass_paired(self, a: str, b: str) -> list[tuple[float, float, float]]:
        out = []
        for ra, rb in zip(self.kinds[a], self.kinds[b]):
            x, y = np.array(self.mass[ra]), np.array(self.mass[rb])
            out.append((float(x.mean() - y.mean()), *bootstrap_difference(x, y)))
        return out

    def to_json(self) -> dict:
        summary: dict = {"kinds": {}, "seeds": {k: len(v) for k, v in self.kinds.items()}}
        for kind in self.kinds:
            summary["kinds"][kind] = {m: {"mean": r[0], "ci95_over_seeds": [r[1], r[2]],
                                          "per_seed": self.seed_rates(kind, m)}
                                      for m, _ in SINGLE + PAIRS for r in [self.rate(kind, m)]}
        acc, chance = np.array(self.text_only["accuracy"]), np.array(self.text_only["chance_accuracy"])
        summary["text_only"] = {"accuracy": float(acc.mean()), "chance_accuracy": float(chance.mean()),
                                "difference_ci95": bootstrap_difference(acc, chance)}
        summary["routing_mass"] = {r: float(np.mean(v)) for r, v in self.mass.items()}
        summary["routing_mass"]["uniform"] = float(np.mean(self.chance_mass))
        summary["timings_s"] = {k: round(v, 1) for k, v in self.timings.items()}
        summary["samples"] = {r: {m: len(v) for m, v in vals.items()} for r, vals in self.runs.items()}
        summary["raw"] = {"runs": self.runs, "kinds": self.kinds, "text_only": self.text_only, "mass": self.mass,
                          "chance_mass": self.chance_mass}
        return summary

    @staticmethod
    def from_json(summary: dict) -> Measurement:
        raw = summary["raw"]
        return Measurement(raw["runs"], raw["kinds"], raw["text_only"], raw["mass"], raw["chance_mass"])


def fmt(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f} [{max(r[1], 0):.2f}, {min(r[2], 1):.2f}]"


def fmt_diff(d: tuple[float, float, float]) -> str:
    return f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]"


def tables(m: Measurement, with_route: str, without_route: str) -> str:
    """The markdown text: one- and two-reference tables, the text-only baseline, the L_route comparison, routing
    mass, and the targets."""
    n_single = len(next(iter(m.runs.values()))["accuracy"])
    n_pairs = len(next(iter(m.runs.values()))["binding"])
    lines = [f"Held-out glyphs (never seen in training). Each cell: mean over training seeds [95 % t-interval across "
             f"seeds]; {n_single} one-reference and {n_pairs} two-reference cases per run.", "",
             "| run kind (seeds) | " + " | ".join(label for _, label in SINGLE) + " |",
             "|---|" + "---|" * len(SINGLE)]
    for kind in m.kinds:
        lines.append(f"| {kind} ({len(m.kinds[kind])}) | " + " | ".join(fmt(m.rate(kind, k)) for k, _ in SINGLE) + " |")
    acc, chance = np.array(m.text_only["accuracy"]), np.array(m.text_only["chance_accuracy"])
    lo, hi = mean_interval(acc)
    lines.append(f"| text only (no references; chance {chance.mean():.2f}) | {acc.mean():.2f} [{lo:.2f}, {hi:.2f}] | "
                 f"{np.mean(m.text_only['exact']):.2f} | {np.mean(m.text_only['retrieval']):.2f} |")
    lines += ["", "| run kind (seeds) | " + " | ".join(label for _, label in PAIRS) + " |", "|---|" + "---|" * len(PAIRS)]
    for kind in m.kinds:
        lines.append(f"| {kind} ({len(m.kinds[kind])}) | " + " | ".join(fmt(m.rate(kind, k)) for k, _ in PAIRS) + " |")
    d = bootstrap_difference(acc, chance)
    lines += ["", f"Text only at chance: its cells match their own glyph {acc.mean():.2f} of the time and another "
                  f"held-out glyph {chance.mean():.2f} (difference {acc.mean() - chance.mean():+.2f}, paired "
                  f"bootstrap 95 % [{d[0]:+.2f}, {d[1]:+.2f}])."]
    if with_route in m.kinds and without_route in m.kinds:
        lines += ["", f"L_route ({with_route} − {without_route}), per training seed, paired bootstrap 95 %:"]
        for metric in ("binding", "blend", "accuracy"):
            per = m.paired(with_route, without_route, metric)
            across = seed_interval([p[0] for p in per])
            lines.append(f"- {metric}: " + ", ".join(f"seed {i} {fmt_diff(p)}" for i, p in enumerate(per))
                         + f"; over seeds {across[0]:+.2f} [{across[1]:+.2f}, {across[2]:+.2f}]")
        per = m.mass_paired(with_route, without_route)
        across = seed_interval([p[0] for p in per])
        lines.append(f"- routing mass (share of each reference's image attention inside its own glyph, sigma 0.5, "
                     f"uniform {np.mean(m.chance_mass):.2f}): " + ", ".join(
                         f"seed {i} {np.mean(m.mass[a]):.2f} vs {np.mean(m.mass[b]):.2f} ({fmt_diff(p)})"
                         for i, (a, b, p) in enumerate(zip(m.kinds[with_route], m.kinds[without_route], per)))
                     + f"; over seeds {across[0]:+.2f} [{across[1]:+.2f}, {across[2]:+.2f}]")
    lines += ["", "Targets (held-out, the best kind): " + "; ".join(target_line(m, k, v) for k, v in TARGETS.items())
              + f"; text only at chance: {'yes' if d[0] <= 0 <= d[1] or abs(acc.mean() - chance.mean()) < 0.05 else 'no'}."]
    return "\n".join(lines)


def target_line(m: Measurement, metric: str, target: float) -> str:
    best = max(m.kinds, key=lambda k: m.rate(k, metric)[0])
    r = m.rate(best, metric)
    return f"{metric} ≥ {target}: {r[0]:.2f} ({best}, {'met' if r[0] >= target else 'missed'})"


FONT_PX = 14


def font(size: int = FONT_PX) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font
        return ImageFont.load_default()


def tile(native: np.ndarray, px: int, scale: int) -> np.ndarray:
    """A native image (h, w, 3) in [0, 1] or uint8, nearest-neighbour upscaled ``scale`` x, centred on a white
    (px, px) tile; None gives a blank tile."""
    out = np.full((px, px, 3), 255, np.uint8)
    if native is None:
        return out
    img = native if native.dtype == np.uint8 else (np.clip(native, 0, 1) * 255).round().astype(np.uint8)
    img = img.repeat(scale, 0).repeat(scale, 1)
    y, x = (px - img.shape[0]) // 2, (px - img.shape[1]) // 2
    out[y : y + img.shape[0], x : x + img.shape[1]] = img
    return out


def write_grid(path: Path, headers: list[str], rows: list[list[np.ndarray | None]], scale: int = 4,
               pad: int = 6, title: str = "") -> None:
    """A labelled grid PNG: a header row of column titles, then one row of native images per case, every image
    nearest-neighbour upscaled ``scale`` x at the same scale (a reference looks as large as its copy)."""
    px = max(max(img.shape[0], img.shape[1]) for r in rows for img in r if img is not None) * scale
    head, top = FONT_PX * 2 + 8, (FONT_PX + 10 if title else 0)
    w, h = len(headers) * (px + pad) + pad, top + head + len(rows) * (px + pad) + pad
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 4), title, fill=(0, 0, 0), font=font())
    for j, text in enumerate(headers):
        for k, line in enumerate(text.split("\n")):
            draw.text((pad + j * (px + pad), top + 2 + k * (FONT_PX + 2)), line, fill=(0, 0, 0), font=font())
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas.paste(Image.fromarray(tile(img, px, scale)), (pad + j * (px + pad), top + head + i * (px + pad)))
    canvas.save(path)
