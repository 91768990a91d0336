"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

Progress is a fraction in ``[0, 1]`` supplied by the caller: ``step / total_steps`` of the step
budget, never elapsed time, so the schedule does not depend on how busy the machine is.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer


def warmup_cosine_factor(step: int, progress: float, warmup_steps: int, floor: float) -> float:
    """Multiplier of the base learning rate: linear warm-up over ``warmup_steps``, then cosine
    from 1 to ``floor`` as ``progress`` goes from 0 to 1."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets every parameter group's ``lr`` from its own base rate; each group decays to ``min_lr``.

    Groups keep their ratios (e.g. SAM-PARSER coefficients with a much higher rate than the decoder).
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, min_lr: float) -> None:
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.min_lr = min_lr
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.step_count = 0
        self.apply(0.0)

    def apply(self, progress: float) -> None:
        """Set the learning rates for the current step at training ``progress``."""
        for group in self.optimizer.param_groups:
            base = group["initial_lr"]
            floor = min(self.min_lr / base, 1.0) if base > 0 else 0.0
            group["lr"] = base * warmup_cosine_factor(self.step_count, progress, self.warmup_steps, floor)

    def step(self, progress: float) -> None:
        """Advance one optimizer step and set the rates for the next one."""
        self.step_count += 1
        self.apply(progress)

    def last_lr(self) -> float:
        """The first group's current learning rate (for logs)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
