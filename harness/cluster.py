"""A distributed search's two roles as the runner sees them (`--chief`, `--worker`).

`ClusterChief` is a strategy for harness/runner.py: the runner creates each cell's parent
run as always; the chief serves the cell's oracle to the workers (harness/distributed.py,
with its watchdog) instead of training, then evaluates the best model itself.
`ClusterWorker` runs a suite its own way: for each cell it waits for the chief to open it,
then runs trials from the chief until none is left. `serve_cell` is the chief's part of one
cell, shared with a local pool (harness/pool.py).
"""

from __future__ import annotations

from pathlib import Path

from harness import distributed, interrupts, plan, steps
from harness.distributed import Cluster
from harness.events import Events
from harness.results import PHASE, REASON, STATUS, TRIAL_ID, Outcome
from harness.runner import CellOutcome
from harness.steps import CellSearch, InProcess
from harness.suites import Cell, Suite


def serve_cell(tuner, job: CellSearch, cluster: Cluster, local: bool = False, on_end=None):
    """Serve the cell's oracle to the workers until its trials have ended, closing the runs
    of trials lost with their workers (see distributed.serve for `local` and `on_end`)."""
    tracker, events = job.tracker, job.events

    def lost(event: distributed.Lost) -> None:
        outcome = Outcome.FAILED if event.failed else Outcome.KILLED
        for run in tracker.trial_runs(job.experiment_id, job.run_id):
            tags = run.tags
            if tags.get(TRIAL_ID) == event.trial_id and run.status == "RUNNING":
                tracker.log(run.run_id, tags={STATUS: outcome.value, REASON: event.reason})
                tracker.finish(run.run_id, outcome.run_status)
        events.trial(
            "end",
            trial_id=event.trial_id,
            status=outcome.value if event.failed else "re-queued",
            reason=event.reason,
        )

    tuner.oracle.verbose = 0
    tuner.save()
    tracker.log(job.run_id, tags={PHASE: "search"})
    distributed.serve(tuner.oracle, cluster, lost, local, on_end)
    tuner.save()  # the trials' end, for an evaluation that reloads the tuner elsewhere
    interrupts.check()  # a stop ended the serving: the search goes on in the rerun
    tracker.log(job.run_id, tags={PHASE: "evaluation"})


class ClusterChief(InProcess):
    """Trials spread over workers that join this chief (a harness/steps.py `Spread`); the best
    model is evaluated here, as `InProcess` does."""

    serves = True

    def __init__(self, cluster: Cluster):
        self.cluster = cluster

    def start(self) -> None:
        distributed.configure(self.cluster)

    def search(self, tuner, job: CellSearch) -> None:
        serve_cell(tuner, job, self.cluster)


class ClusterWorker:
    """Runs a suite as a worker of a chief: each cell's trials, as the chief hands them out."""

    def __init__(self, tracker, workdir: Path, events: Events | None, cluster: Cluster):
        self.tracker, self.workdir, self.cluster = tracker, workdir, cluster
        self.events = events or Events()

    def run(self, suite: Suite, cells=None, frontiers=None):
        """A worker's share of every cell: (cell outcomes, no frontier outcomes: a frontier
        chooses its cells as it goes, so workers cannot share it)."""
        cells = list(suite.cells if cells is None else cells)
        distributed.configure(self.cluster)
        self.events.start(f"suite {suite.name}", plan.units_work(cells, []))
        outcomes = []
        for cell in cells:
            interrupts.check()
            outcomes.append(self.run_cell(suite.name, cell))
            self.events.unit_done(cell.key)
        return outcomes, []

    def run_cell(self, experiment: str, cell: Cell) -> CellOutcome:
        """Trials of the cell from the chief until it has none left."""
        resolved = steps.resolve(cell, self.workdir)
        parent = distributed.wait_for_cell(self.tracker, experiment, cell.key, resolved.label)
        if parent is None:
            return CellOutcome(cell, "skipped")
        tuner = steps.build_tuner(
            self.tracker,
            parent.experiment_id,
            parent.run_id,
            resolved,
            self.events.trial,
        )
        with distributed.Heartbeat(tuner):
            steps.search(tuner, resolved)
        return CellOutcome(cell, "searched", trials=len(tuner.records))
