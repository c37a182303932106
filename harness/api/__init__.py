"""The harness as a library: each `harness` command is one call here, and a notebook makes
the same calls.

    from harness import api

    ran = api.run(tasks=["adding"], lengths=[20], families=["gru"], store="sqlite:///mlflow.db")
    checked = api.verify("sqlite:///mlflow.db", experiment=ran.experiment)
    table = api.results("sqlite:///mlflow.db", experiment=ran.experiment)

Every argument is a keyword. Bad input raises `harness.errors.UserError` (the CLI prints it
as one line and exits 2); a run stopped by Ctrl-C or `stop_after` raises `Interrupted`, a
store that stays unreachable `StoreUnavailable` (both in harness/errors.py). Nothing here
prints: progress goes to the `events` (harness/events.py) or `progress` callables given.

The calls live by what they do: `runs` (run, frontier), `store` (status, verify, report,
results), `probes` (the probes and their report), `data` (tasks, spaces, generate,
clean_cache), and `common` what they share; import them from here.
"""

from harness import backend

backend.configure()  # before anything imports Keras

from harness.api.common import DEFAULT_WORKDIR, Progress, experiment_name  # noqa: E402
from harness.api.data import Generated, clean_cache, generate, spaces, tasks  # noqa: E402
from harness.api.probes import (  # noqa: E402
    CostProbed,
    GradientsProbed,
    Probed,
    RotationProbed,
    probe_cost,
    probe_gradients,
    probe_report,
    probe_rotation,
)
from harness.api.runs import Ran, frontier, run  # noqa: E402
from harness.api.store import (  # noqa: E402
    RESULT_COLUMNS,
    Reported,
    Status,
    part_keys,
    report,
    results,
    status,
    verify,
)
from harness.errors import Interrupted, UserError  # noqa: E402

__all__ = [
    "DEFAULT_WORKDIR", "Progress", "experiment_name",
    "Interrupted", "Ran", "Reported", "RESULT_COLUMNS", "Status", "UserError", "frontier", "part_keys",
    "report", "results", "run", "status", "verify",
    "CostProbed", "Generated", "GradientsProbed", "Probed", "RotationProbed", "clean_cache",
    "generate", "probe_cost", "probe_gradients", "probe_report", "probe_rotation", "spaces",
    "tasks",
]  # fmt: skip
