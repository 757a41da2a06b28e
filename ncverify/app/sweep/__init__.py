"""Sweeps: one `check` per point of a parameter grid, run through Dask, drawn as a phase diagram.

`ncverify sweep CLAIM` takes the options of `check`; any of `--lambda-w`, `--lambda-h`,
`--lambda-b`, `--depth`, `--classes`, `--samples` and `--width` may be a range
`start:stop:count[:log]`, and `--lambda-h tied` sets `lambda_H = lambda_W` at every point.  The
grid is the Cartesian product of the ranges; every point is one `ncverify.verify.verify` call,
with the same seed at every point, so a point's report is the report `check` gives for the same
options (timings aside).

Grid values of the lambdas are exact rationals, so that regimes are decided exactly: an interior
point of a log grid, `start (stop/start)^{i/(count-1)}`, is rounded to `SIGNIFICANT_DIGITS`
significant decimal digits and that decimal is read exactly (`0.000158489` is
`158489/1000000000`); the end points are the given values themselves.  Each point records the
decimal, the rational and the unrounded grid value.  Integer ranges are rounded to integers
(repeated values are dropped).

Execution: a `distributed.LocalCluster` of worker processes on this machine's cores (loopback
only), or an existing cluster (`--scheduler ADDRESS`).  Each finished point is appended at once
to the results file as one JSON line: the report object of `check --json` plus a `sweep` member
(`key`, grid `index`, the point's coordinates, the equivalent `check` command).  The key is a
digest of everything that determines the report (claim, problem, settings, backend), so
`--resume` skips every point whose key is in the file, and a point is never written twice.
A worker lost mid-sweep loses nothing: the scheduler reschedules its tasks on the remaining
workers, and a task that the scheduler gives up on (`KilledWorker`) is resubmitted.
"""

from __future__ import annotations

from ncverify.app.sweep._common import (  # noqa: F401
    ALIVE_GAIN,
    FLAGS,
    INTEGER_OPTIONS,
    LAMBDA_OPTIONS,
    MAX_RESUBMIT,
    PLOT_FORMATS,
    RANGE_OPTIONS,
    SIGNIFICANT_DIGITS,
    TASK_PREFIX,
    VERDICT_COLOURS,
    SweepError,
)
from ncverify.app.sweep.cluster import Outcome, dask_client, default_workers, execute  # noqa: F401
from ncverify.app.sweep.grid import (  # noqa: F401
    Axis,
    Coordinate,
    GridPoint,
    _grid_value,
    _integer_grid,
    _lambda_grid,
    decimal_text,
    expand,
    is_range,
    parse_axis,
)
from ncverify.app.sweep.plot import (  # noqa: F401
    _alive_panel,
    _cells,
    _class_colours,
    _count,
    _draw_thresholds,
    _fractional_index,
    _gain_panel,
    _label,
    _plot_1d,
    _plot_2d,
    _tied,
    _verdict_legend,
    axis_value,
    boundaries_on_axis,
    check_plot_path,
    claimed_diagonal,
    plot,
    plot_axes,
)
from ncverify.app.sweep.results import ResultsFile  # noqa: F401
from ncverify.app.sweep.summary import (  # noqa: F401
    _classes,
    _num,
    agreement,
    best_run,
    predicted_alive,
    run_alive,
    summary_rows,
    summary_table,
    title,
)
from ncverify.app.sweep.tasks import (  # noqa: F401
    PointTask,
    _serial_runs,
    best_run_classes,
    check_command,
    point_key,
    run_point,
)
