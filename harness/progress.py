"""Progress of a run: a rich live display on a terminal, plain lines otherwise.

It draws what harness/events.py's calls report (units, cells, trials and their epochs,
frontier steps): the current trial's epoch, validation score and seconds per epoch, and
for the run the units done, running and left with the time left at most
(harness/plan.py's `Remaining` says how it is estimated).
"""

from __future__ import annotations

import math

from rich import progress as bars
from rich.console import Console

from harness.events import Events
from harness.plan import Remaining, duration
from harness.suites import Cell


def _score(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


class ConsoleProgress(Events):
    """Units done, the current cell, its trial and the best score so far."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.bar: bars.Progress | None = None
        self.name, self.cell_label, self.cell_key = "", "", ""
        self.remaining = Remaining({})
        self.units = 0
        self.running: dict[str, str] = {}  # a running cell's key: its unit's key

    def start(self, name: str, work: dict[str, int], side_by_side: int = 1) -> None:
        self.name, self.units = name, len(work)
        self.remaining = Remaining(work, side_by_side)
        if self.live:
            self.bar = bars.Progress(
                bars.TextColumn("{task.description}", markup=False),
                bars.BarColumn(),
                bars.MofNCompleteColumn(),
                bars.TimeElapsedColumn(),
                bars.TextColumn("{task.fields[left]}", markup=False),
                console=self.console,
            )
            self.bar.start()
            self.bar_task = self.bar.add_task(name, total=self.units, left="")
        else:
            self.console.print(f"{name}: {self.units} to run", highlight=False, markup=False)

    def run_state(self) -> str:
        """Units done, running and left, and the time left at most once an epoch is timed."""
        left = len(self.remaining.left)
        running = len(set(self.running.values()))
        text = f"{self.units - left} done, {running} running, {left - running} left"
        seconds = self.remaining.seconds_left()
        return text if seconds is None else f"{text}, at most about {duration(seconds)} to go"

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.bar_task, description=text)
        else:
            self.console.print(text, highlight=False, markup=False)

    def _print(self, text: str) -> None:
        console = self.bar.console if self.bar is not None else self.console
        console.print(text, highlight=False, markup=False)

    def cell_start(self, cell: Cell, where: str, unit: str) -> None:
        self.cell_label, self.cell_key = f"{where} {cell.label}", cell.key
        self.running[cell.key] = unit
        self._say(f"{self.cell_label}: starting")

    def trial(self, event: str, **info) -> None:
        """A trial started, ran an epoch or ended (`label` and `key` name the cell where
        workers run several)."""
        label = info.get("label") or self.cell_label
        worker = f" on {info['worker']}" if info.get("worker") else ""
        if event == "epoch":
            self._epoch(label, worker, info)
            return
        if event == "start":
            self._say(f"{label}: trial {info['trial_id']} running{worker}")
            return
        status = info.get("status")
        detail = (
            f"objective {_score(info.get('objective'))}, best {_score(info.get('best'))}"
            if status == "finished"
            else info.get("reason", "")
        )
        self._say(f"{label}: trial {info['trial_id']} {status}{worker} {detail}")

    def _epoch(self, label: str, worker: str, info: dict) -> None:
        unit = self.running.get(info.get("key") or self.cell_key)
        if unit is not None:
            self.remaining.epoch(unit, info["work"], info["seconds"])
        of = f" of {info['epochs']}" if info.get("epochs") else ""
        self._say(
            f"{label}: {info['run']} epoch {info['epoch']}{of}{worker}, "
            f"validation {_score(info['score'])}, {info['seconds']:.1f} s per epoch"
        )
        if self.bar is not None:
            self.bar.update(self.bar_task, left=self.run_state())

    def cell_end(self, cell: Cell, where: str, outcome) -> None:
        self.running.pop(cell.key, None)
        text = f"{where} {cell.label}: {outcome.state}"
        if outcome.result is not None and outcome.result.seed_scores:
            verdict = outcome.result.verdict
            solved = "solved" if verdict.solved else "not solved"
            diverged = f", {verdict.seeds_diverged} diverged" if verdict.seeds_diverged else ""
            text += f", test {verdict.text()} ({solved}{diverged})"
        self._print(text + f", {outcome.trials} trials")

    def frontier_step(self, spec, step) -> None:
        verdict = "solved" if step.solved else "failed"
        extra = ", another search seed" if step.attempt else ""
        self._print(f"{spec.label}: L={step.length} {verdict} ({step.role}{extra})")

    def unit_done(self, unit: str, text: str = "") -> None:
        self.remaining.done(unit)
        if text:
            self._print(text)
        if self.bar is not None:
            self.bar.update(self.bar_task, advance=1, left=self.run_state())
        else:
            self._print(f"{self.name}: {self.run_state()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
