"""Progress of a run: a rich live display on a terminal, plain lines otherwise."""

from __future__ import annotations

import math

from rich import progress as bars
from rich.console import Console

from harness.suites import Cell, Suite


def _label(cell: Cell) -> str:
    return f"{cell.task} L={cell.length} {cell.family}"


def _score(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


class Progress:
    """Receives what the runner is doing; `ConsoleProgress` draws it. No-op by default."""

    def suite_start(self, suite: Suite, total: int) -> None: ...
    def cell_start(self, index: int, cell: Cell) -> None: ...
    def trial(self, event: str, **info) -> None: ...
    def cell_end(self, index: int, cell: Cell, outcome) -> None: ...


class ConsoleProgress(Progress):
    """Cells done, the current cell, its trial and the best score so far."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.bar: bars.Progress | None = None
        self.cell_label, self.total, self.best = "", 0, math.nan
        self.trials = 0

    def suite_start(self, suite: Suite, total: int) -> None:
        self.total = total
        if self.live:
            self.bar = bars.Progress(
                bars.TextColumn("{task.description}"),
                bars.BarColumn(),
                bars.MofNCompleteColumn(),
                bars.TimeElapsedColumn(),
                console=self.console,
            )
            self.bar.start()
            self.bar_task = self.bar.add_task(f"suite {suite.name}", total=total)
        else:
            self.console.print(f"suite {suite.name}: {total} cells", highlight=False)

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.bar_task, description=text)
        else:
            self.console.print(text, highlight=False)

    def cell_start(self, index: int, cell: Cell) -> None:
        self.cell_label, self.best, self.trials = (
            f"[{index + 1}/{self.total}] {_label(cell)}",
            math.nan,
            0,
        )
        self._say(f"{self.cell_label}: starting")

    def trial(self, event: str, **info) -> None:
        if event == "start":
            self.trials += 1
            self._say(
                f"{self.cell_label}: trial {info['trial_id']} running, best {_score(self.best)}"
            )
            return
        self.best = info.get("best", self.best)
        status = info.get("status")
        detail = (
            f"objective {_score(info.get('objective'))}, best {_score(self.best)}"
            if status == "finished"
            else info.get("reason", "")
        )
        self._say(f"{self.cell_label}: trial {info['trial_id']} {status} {detail}")

    def cell_end(self, index: int, cell: Cell, outcome) -> None:
        text = f"[{index + 1}/{self.total}] {_label(cell)}: {outcome.state}"
        if outcome.result is not None and outcome.result.seed_scores:
            verdict = outcome.result.verdict
            solved = "solved" if verdict.solved else "not solved"
            text += f", test {verdict.text()} ({solved}, {verdict.seeds_text()})"
        text += f", {outcome.trials} trials"
        if self.bar is not None:
            self.bar.console.print(text, highlight=False)
            self.bar.advance(self.bar_task)
            if index + 1 == self.total:
                self.bar.stop()
        else:
            self.console.print(text, highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
