"""What a training run says about itself: its plan at the start, and after a few steps
how long the rest will take on this machine (measured, not guessed)."""

from __future__ import annotations


def format_minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def plan_line(name: str, total_steps: int, start_step: int, batch_size: int, train_size: int,
              test_size: int, device, run_dir) -> str:
    """One line: steps, signals and epochs ahead, where, and what happens at the end."""
    signals = total_steps * batch_size
    ahead = f"steps {start_step + 1:,}–{total_steps:,} of" if start_step else f"{total_steps:,} steps of"
    return (f"{name}: {ahead} {batch_size} signals ({signals:,} training signals, "
            f"{signals / train_size:.1f} epochs of {train_size:,}) on {device}, then the held-out score "
            f"over {test_size:,} signals and a sample figure, in {run_dir}")


class StepClock:
    """Times steps ``skip`` … ``skip + measure`` after the start (the first steps pay for
    allocation and warm-up) and then gives one line with the estimate for the rest."""

    def __init__(self, total_steps: int, start_step: int, skip: int = 2, measure: int = 5):
        self.total, self.first, self.last = total_steps, start_step + skip, start_step + skip + measure
        self.started_at: float | None = None

    def update(self, step: int, train_seconds: float) -> str | None:
        if step == self.first:
            self.started_at = train_seconds
        if step != self.last or self.started_at is None or step >= self.total:
            return None
        per_step = (train_seconds - self.started_at) / (self.last - self.first)
        rest = per_step * (self.total - step)
        return (f"measured {per_step * 1000:.0f} ms/step (steps {self.first + 1}–{self.last}): the remaining "
                f"{self.total - step:,} steps take about {format_minutes(rest)} on this machine, "
                f"plus held-out evaluation")
