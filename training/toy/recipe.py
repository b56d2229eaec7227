"""What the toy DreamO trains: the runs (placement x L_route x training seed) and the trainer config of each.

Each run is the real trainer (``python -m training.train``) on the frozen toy base: LoRA on the official targets +
task/index tables + T5 placeholder rows; flow matching + L_route + L_holder; the paper's three stages scaled down:
20 % subject warm-up on one-glyph rows; 75 % all rows; 5 % quality stage at a tenth of the learning rate, on
self-reference rows with 95 % of their reference tokens dropped mixed half and half with the other rows (which
keep their references). The paper's stage 3 (self-reference rows alone, every batch dropped) unlearns the copy
here: the toy has no image quality for it to restore (training/README.md, pilots). ``placed`` runs train with
``data.placement: box`` (each reference's ids in its glyph's box: DreamFuse's positional affine); ``diagonal``
runs keep DreamO's own diagonal reference ids and stop earlier (their copy plateaus by step 400). A run's ``seed`` is the trainer's ``seed`` (data order and noise) and ``model.init_seed``
(the LoRA's and the tables' start; the frozen base and its tiny text encoder stay those of the base).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import toy_model_overrides
from .constants import DREAMO_STEPS, LORA_RANK, REF_SIZE, ROUTE_WEIGHT, TARGET_SIZE


@dataclass(frozen=True)
class Run:
    """One toy DreamO run: ``placement`` ``box`` or ``diagonal``, λ_route ``route``, training ``seed``."""

    placement: str
    route: float
    seed: int

    @property
    def steps(self) -> int:
        """Training steps: ``DREAMO_STEPS`` placed, half of it diagonal."""
        return DREAMO_STEPS if self.placement == "box" else DREAMO_STEPS // 2

    @property
    def kind(self) -> str:
        """``placed, L_route`` ... the row of the tables (seeds pooled)."""
        return f"{'placed' if self.placement == 'box' else 'diagonal'}, {'L_route' if self.route else 'no L_route'}"

    @property
    def name(self) -> str:
        """File-safe name: ``placed_route_s0``."""
        return f"{'placed' if self.placement == 'box' else 'diagonal'}_{'route' if self.route else 'noroute'}_s{self.seed}"


PLACED_ROUTE, PLACED, DIAGONAL_ROUTE = "placed, L_route", "placed, no L_route", "diagonal, L_route"
RUNS: tuple[Run, ...] = (
    *(Run("box", ROUTE_WEIGHT, s) for s in (0, 1, 2)),
    *(Run("box", 0.0, s) for s in (0, 1, 2)),
    *(Run("diagonal", ROUTE_WEIGHT, s) for s in (0, 1)),
)


def dreamo_overrides(run: Run, out: Path, data: dict[str, Path], base: Path, steps: int | None = None,
                     checkpoint_every: int = 0) -> list[str]:
    """The trainer's ``--key=value`` config of one run (the stages above; batch 8, lr 1e-3, uniform t; ``steps``
    default ``run.steps``)."""
    steps = steps or run.steps
    s1, s3 = steps // 5, steps // 20
    sets = ", ".join(f"{k}: '{v}'" for k, v in data.items())
    return [
        f"--output_dir={out}", f"--seed={run.seed}", f"--data.datasets={{{sets}}}",
        f"--data.buckets=[[{TARGET_SIZE}, {TARGET_SIZE}]]", f"--data.ref_res={REF_SIZE}",
        f"--data.placement={run.placement}", "--data.batch_size=8", *toy_model_overrides(base),
        f"--model.init_seed={run.seed}", "--timestep_sampling=uniform", f"--model.lora_rank={LORA_RANK}",
        f"--loss.route={run.route}", "--loss.holder=0.5", f"--checkpoint_every={checkpoint_every or steps}",
        f"--keep_checkpoints={0 if checkpoint_every else 1}", "--progress=false", "--log_every=25",
        f"--stages=[{{name: subject, steps: {s1}, lr: 0.001, warmup: 20, mixture: {{single: 1.0}}}}, "
        f"{{name: all, steps: {steps - s1 - s3}, lr: 0.001, mixture: {{single: 0.4, multi: 0.6}}}}, "
        f"{{name: quality, steps: {s3}, lr: 0.0001, mixture: {{self: 0.5, single: 0.25, multi: 0.25}}, "
        "ref_token_drop: {self: 0.95}}]",
    ]
