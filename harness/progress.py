"""Progress of a run: a rich live display on a terminal, plain lines otherwise.

It draws what harness/events.py's calls report (units, cells, trials, frontier steps).
"""

from __future__ import annotations

import math

from rich import progress as bars
from rich.console import Console

from harness.events import Events
from harness.suites import Cell


def _score(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


class ConsoleProgress(Events):
    """Units done, the current cell, its trial and the best score so far."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.bar: bars.Progress | None = None
        self.cell_label = ""

    def start(self, name: str, units: int) -> None:
        if self.live:
            self.bar = bars.Progress(
                bars.TextColumn("{task.description}", markup=False),
                bars.BarColumn(),
                bars.MofNCompleteColumn(),
                bars.TimeElapsedColumn(),
                console=self.console,
            )
            self.bar.start()
            self.bar_task = self.bar.add_task(name, total=units)
        else:
            self.console.print(f"{name}: {units} to run", highlight=False, markup=False)

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.bar_task, description=text)
        else:
            self.console.print(text, highlight=False, markup=False)

    def _print(self, text: str) -> None:
        console = self.bar.console if self.bar is not None else self.console
        console.print(text, highlight=False, markup=False)

    def cell_start(self, cell: Cell, where: str) -> None:
        self.cell_label = f"{where} {cell.label}"
        self._say(f"{self.cell_label}: starting")

    def trial(self, event: str, **info) -> None:
        """A trial started or ended (`label` names the cell where workers run several)."""
        label = info.get("label") or self.cell_label
        worker = f" on {info['worker']}" if info.get("worker") else ""
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

    def cell_end(self, cell: Cell, where: str, outcome) -> None:
        text = f"{where} {cell.label}: {outcome.state}"
        if outcome.result is not None and outcome.result.seed_scores:
            verdict = outcome.result.verdict
            solved = "solved" if verdict.solved else "not solved"
            text += f", test {verdict.text()} ({solved}, {verdict.seeds_text()})"
        self._print(text + f", {outcome.trials} trials")

    def frontier_step(self, spec, step) -> None:
        verdict = "solved" if step.solved else "failed"
        extra = ", another search seed" if step.attempt else ""
        self._print(f"{spec.label}: L={step.length} {verdict} ({step.role}{extra})")

    def unit_done(self, text: str) -> None:
        if text:
            self._print(text)
        if self.bar is not None:
            self.bar.advance(self.bar_task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
