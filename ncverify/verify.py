"""The verification pipeline: claim + problem + backend -> Report (verdict + evidence).

Evidence (docs/verdicts.md):
- E1 the predicted point has the claimed objective, vanishing gradient and no negative curvature;
- E2 optimiser runs from random starts only, each classified at-prediction / worse / better;
- E3 an independent certificate where one exists;
- E4 the geometry of the best run against the claimed geometry (skipped where non-unique).

Verdicts say no more than the evidence: `certified` needs E1, a matching certificate, a run at
the prediction and none better; without a certificate the same is `consistent`; any point below
the claimed optimum by more than its proven evaluation error, a failed E1, a certificate
contradicting the claimed value or a wrong geometry at the optimum is `refuted`; no run at the
prediction (and nothing better) or failed numerics is `inconclusive`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mpmath
import numpy as np

from ncverify.backend import Backend, to_host
from ncverify.claim import Claim, Prediction
from ncverify.evidence.certificates import CERTIFIERS, Certificate
from ncverify.evidence.curvature import extreme_curvature
from ncverify.evidence.metrics import class_means, layer_geometry, nc_metrics, worst
from ncverify.evidence.optimize import (
    DEFAULT_CONTINUATION,
    DEFAULT_SCALES,
    Run,
    default_jobs,
    descend,
    multistart,
    run_scales,
    single_threaded_blas,
)
from ncverify.io import save_counterexample
from ncverify.limits import (
    FLOAT_BYTES,
    HOW_TO_FORCE,
    MAX_CLASSES_FOR_GRAMS,
    MAX_RUNS,
    WORKING_COPIES,
    StepSkipped,
    check_memory,
    check_runs_size,
    descent_iterations,
    fits_in_memory,
    forcing,
    skip_unless_fits,
)
from ncverify.model.flatten import Flattener
from ncverify.model.objective import Objective, Params, norm
from ncverify.model.problem import Problem
from ncverify.model.reduction import (
    PARAMETERISATIONS,
    Parameterisation,
    default_parameterisation,
    is_lift,
    lift,
    to_class_means,
    unavailable,
)
from ncverify.report import Check, Counterexample, Evidence, GeometryEvidence, Report, Verdict


@dataclass(frozen=True)
class Tolerances:
    """Every tolerance of a verification, derived from the dtype's unit roundoff."""

    objective: float  # relative: predicted point vs claimed optimum (on top of its error bound)
    gradient: float  # relative to ||grad loss|| + ||grad regulariser||
    curvature: float  # relative to the largest curvature
    at_prediction: float  # relative: a run counts as reaching the prediction
    certificate: float  # relative: certificate vs claimed optimum
    geometry: float  # NC distances and relative errors of the closest run at the prediction
    # a run at the claimed optimum whose geometry is off by more than this has another geometry
    # (a refutation); between `geometry` and this, the runs are not accurate enough to tell
    geometry_refutes: float

    @classmethod
    def for_eps(cls, eps: float) -> Tolerances:
        if eps < 1e-10:  # float64
            return cls(1e-10, 1e-8, 1e-6, 1e-8, 1e-10, 1e-5, 1e-3)
        return cls(1e-4, 1e-3, 1e-3, 1e-4, 1e-4, 1e-2, 1e-1)


@dataclass
class Settings:
    restarts: int = 8
    seed: int = 0
    scales: tuple[float, ...] = DEFAULT_SCALES
    certificate: bool = True
    optimise: bool = True
    probe: bool = False
    max_iter: int = 20000
    escalate: int = 2  # times the runs are doubled when none reached the prediction or beat it
    curvature_steps: int = 60
    save_dir: str | None = None
    force: bool = False  # run every step even above its size limit (`ncverify.limits`)
    # each random-start run descends at lambda/8 first and ladders up past the thresholds
    # (`ncverify.evidence.optimize.Continuation`); False: one plain descent from the start
    continuation: bool = True
    # what the runs, E1 and E4 optimise and evaluate: None for the default of the head (the
    # exact class-mean reduction for linear heads, `ncverify.model.reduction`), or "full"
    parameterisation: Parameterisation | None = None

    def __post_init__(self) -> None:
        if self.parameterisation is not None and self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(
                f"parameterisation must be one of {', '.join(PARAMETERISATIONS)}, "
                f"not {self.parameterisation!r}."
            )


@single_threaded_blas
def verify(
    claim: Claim,
    problem: Problem,
    backend: Backend | None = None,
    settings: Settings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Report:
    """Check `claim` on `problem` and return the report.

    Raises `ValueError` when the claim names a certificate kind that does not exist (a
    misspelling would otherwise drop the certificate and silently weaken the verdict).
    """
    unknown = [kind for kind in claim.certificates if kind not in CERTIFIERS]
    if unknown:
        raise ValueError(
            f"claim {claim.id!r} names unknown certificate kind(s) {unknown}; known kinds: "
            f"{sorted(CERTIFIERS)}."
        )
    settings = settings or Settings()
    affordable(problem, settings)
    with forcing(settings.force):
        return _verify(claim, problem, backend or Backend.create(), settings, progress)


def affordable(problem: Problem, settings: Settings) -> None:
    """Raise `ncverify.limits.InputTooLarge` (bad input) when no check of `problem` could hold
    its arrays: one point of the smallest parameterisation (the weights and the class means), or
    with `parameterisation="full"` one point and the targets of every sample.  Steps that need
    more than the first skip themselves with a note (`skip_unless_fits`)."""
    check_memory(FLOAT_BYTES * problem.point_entries(problem.K), "one point of this instance")
    if settings.parameterisation == "full":
        full = problem.point_entries() + problem.K * problem.N  # the point and the one-hot Y
        check_memory(FLOAT_BYTES * full, "the full parameterisation (every sample's features)")


@dataclass(frozen=True)
class _Context:
    """What every evidence step of one verification reads."""

    claim: Claim
    problem: Problem
    backend: Backend
    settings: Settings
    objective: Objective  # in the parameterisation of the check
    claimed: mpmath.mpf
    tol: Tolerances
    progress: Callable[[str, int, int], None] | None

    def reduced(self, p: Params) -> Params:
        """A full point in the check's parameterisation (its class means where it is not
        collapsed: by Jensen's inequality a point no worse)."""
        if self.objective.parameterisation == "full":
            return p
        return to_class_means(self.problem.counts, p, self.backend.xp)

    def lifted(self, p: Params) -> Params:
        """A point of the check's parameterisation as a point of the full problem."""
        if self.objective.parameterisation == "full":
            return p
        return lift(self.problem.counts, p, self.backend.xp)


@contextlib.contextmanager
def _timed(timing: dict[str, float], phase: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timing[phase] = time.perf_counter() - t0


def _verify(
    claim: Claim,
    problem: Problem,
    backend: Backend,
    settings: Settings,
    progress: Callable[[str, int, int], None] | None,
) -> Report:
    tol = Tolerances.for_eps(backend.eps)
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    report = Report(
        claim=claim, problem=problem, backend=backend, probe=settings.probe, tolerances=tol
    )
    report.hypotheses = claim.hypotheses(problem)
    if report.hypotheses and not settings.probe:
        report.verdict = Verdict.NOT_APPLICABLE
        report.timing = {"total": time.perf_counter() - t_start}
        return report
    if (problem.loss == "max-margin") != (claim.loss == "max-margin"):
        # a penalised loss and the constrained limit have different optima: nothing to compare
        report.verdict = Verdict.NOT_APPLICABLE
        report.notes.append(
            "the max-margin problem and a penalised loss have different optima: a claim about "
            "one cannot be probed on the other"
        )
        report.timing = {"total": time.perf_counter() - t_start}
        return report
    with _timed(timing, "closed_form"):
        report.prediction = claim.closed_form(problem)
    if problem.loss == "max-margin":  # constrained: its own evidence (no objective F)
        from ncverify.verify_margin import verify_margin

        verify_margin(report, settings, progress, timing)
        return _finish(report, settings, timing, t_start)
    with _timed(timing, "predicted_point"):  # E1
        _stage(progress, "predicted point (E1)", 0)
        predicted = _predicted_point(report, claim, problem, backend)
        report.parameterisation = _parameterisation(report, settings, predicted)
        objective = Objective(
            problem,
            backend.xp,
            dtype=backend.dtype,
            device=backend.device,
            parameterisation=report.parameterisation,
        )
        ctx = _Context(
            claim, problem, backend, settings, objective, report.prediction.objective, tol, progress
        )
        point, e1_ok = _e1(ctx, report, predicted)
    optimise = settings.optimise and _runs_affordable(ctx, report)
    if optimise:
        with _timed(timing, "search"):  # the claim's own structured candidates
            report.search_candidates = _search(ctx, report)
        with _timed(timing, "optimise"):  # E2
            report.runs = _e2(ctx, report, _beaten_by_search(ctx, report))
    report.start_scales = run_scales(settings.scales, len(report.runs) or len(settings.scales))
    if settings.certificate:
        with _timed(timing, "certificate"):  # E3
            report.certificate = _e3(ctx, report)
    _e4(ctx, report, point)
    _conclude(ctx, report, point, e1_ok)
    return _finish(report, settings, timing, t_start)


def _finish(report: Report, settings: Settings, timing: dict[str, float], t_start: float) -> Report:
    """The total time, and the counterexample saved where asked."""
    timing["total"] = time.perf_counter() - t_start
    report.timing = timing
    if report.counterexample is not None and settings.save_dir:
        save_counterexample(settings.save_dir, report, report.backend)
    return report


def _parameterisation(
    report: Report, settings: Settings, predicted: Params | None
) -> Parameterisation:
    """The parameterisation of the check: the one asked for, else the head's default; the full
    one where the claim predicts features that are not collapsed (E1 must judge the claim's own
    point, and the class-mean reduction would replace it by another)."""
    problem = report.problem
    chosen = settings.parameterisation or default_parameterisation(problem)
    why = unavailable(problem, chosen)
    if why is not None:
        raise ValueError(why[0].upper() + why[1:] + ".")
    if chosen != "full" and predicted is not None:
        if not is_lift(problem.counts, predicted.H, report.backend.xp):
            report.notes.append(
                "the claim's predicted features are not collapsed (the samples of a class have "
                "different features): the check runs on the full parameterisation"
            )
            return "full"
    return chosen


def _e1(ctx: _Context, report: Report, predicted: Params | None) -> tuple[Params | None, bool]:
    """E1: the claim's predicted point, and whether it has the claimed value, is stationary and
    shows no negative curvature (in the check's parameterisation: at a lift the full gradient is
    the lifted reduced one, of the same norm, and the full Hessian adds only a within-class block
    `>= lambda_H I`, so the smallest curvature is the reduced one's or positive)."""
    report.predicted_point = predicted
    point = None if predicted is None else ctx.reduced(predicted)
    linear = ctx.problem.activation == "linear"
    if point is not None and linear and ctx.problem.K <= MAX_CLASSES_FOR_GRAMS:
        g = layer_geometry(ctx.objective, point)[0]
        to = ctx.backend.to_numpy
        report.prediction_grams = {"WWt": to(g.WWt), "HtH": to(g.HtH), "WH": to(g.WH)}
    ok = point is not None and _check_predicted_point(
        report, ctx.objective, point, ctx.claimed, ctx.tol, ctx.settings
    )
    _stage(ctx.progress, "predicted point (E1)", 1)
    return point, ok


def _runs_bytes(objective: Objective, backend: Backend, restarts: int) -> int:
    """Memory of `restarts` runs: the working copies of the runs in flight, and every end point
    (each run's is kept for classification and E4)."""
    point = FLOAT_BYTES * objective.problem.point_entries(objective.columns)
    return point * (WORKING_COPIES * default_jobs(backend, restarts) + restarts)


def _runs_affordable(ctx: _Context, report: Report) -> bool:
    try:
        check_runs_size(ctx.objective.evaluation_cost)
        runs = _runs_bytes(ctx.objective, ctx.backend, ctx.settings.restarts)
        skip_unless_fits(runs, "the random-start runs (E2)")
        _max_iter(ctx, ctx.settings.restarts)
    except StepSkipped as exc:
        report.notes.append(str(exc))
        return False
    return True


def _affordable_runs(ctx: _Context, restarts: int) -> bool:
    """Could `restarts` runs be held in memory and run within the cost limit?"""
    if not fits_in_memory(_runs_bytes(ctx.objective, ctx.backend, restarts)):
        return False
    try:
        _max_iter(ctx, restarts)
    except StepSkipped:
        return False
    return True


def _max_iter(ctx: _Context, restarts: int) -> int:
    """Iterations a descent of `restarts` runs may take (`ncverify.limits.descent_iterations`)."""
    settings = ctx.settings
    descents = DEFAULT_CONTINUATION.most_descents if settings.continuation else 1
    cost = ctx.objective.evaluation_cost
    return descent_iterations(restarts, descents, cost, settings.max_iter)


def _e2(ctx: _Context, report: Report, beaten: bool = False) -> list[Run]:
    """E2: seeded random-start runs, each classified; doubled (`escalate` times at most) while
    none reaches the prediction or beats it, unless a structured candidate of the claim's search
    already beats it (`beaten`): more runs would add nothing to that counterexample."""
    settings, restarts = ctx.settings, ctx.settings.restarts

    def on_run(i: int, run: Run) -> None:
        if ctx.progress is not None:
            ctx.progress("optimiser runs", i + 1, restarts)

    for attempt in range(settings.escalate + 1):
        max_iter = _max_iter(ctx, restarts)
        if max_iter < settings.max_iter:
            report.notes.append(
                f"each descent of the {restarts} random-start runs is capped at {max_iter} "
                f"iterations (not {settings.max_iter}) so that their worst case stays within the "
                f"cost limit of the search; {HOW_TO_FORCE}"
            )
        runs = multistart(
            ctx.problem,
            ctx.backend,
            restarts=restarts,
            seed=settings.seed,
            scales=settings.scales,
            max_iter=max_iter,
            progress=on_run,
            continuation=DEFAULT_CONTINUATION if settings.continuation else None,
            parameterisation=ctx.objective.parameterisation,
        )
        for run in runs:
            _classify(run, ctx.objective, ctx.claimed, ctx.tol)
        outcomes = {run.outcome for run in runs}
        if "at-prediction" in outcomes or "better" in outcomes or attempt == settings.escalate:
            break
        if beaten:
            report.notes.append(
                f"none of {restarts} random-start runs reached the prediction or beat it; not "
                "escalated, since a candidate of the claim's own search beats it"
            )
            break
        if 2 * restarts > MAX_RUNS or not _affordable_runs(ctx, 2 * restarts):
            report.notes.append(
                f"none of {restarts} random-start runs reached the prediction or beat it; not "
                f"escalated to {2 * restarts} runs, above what one check may hold "
                f"({MAX_RUNS} runs, their points within the memory budget and their work "
                "within the cost limit of the search)"
            )
            break
        # no run reached the prediction and none beat it: gather more evidence before saying
        # inconclusive (twice the runs, over the same range of start scales)
        report.notes.append(
            f"none of {restarts} random-start runs reached the prediction or beat it "
            f"({', '.join(sorted(outcomes))}); escalated to {2 * restarts} runs"
        )
        restarts *= 2
    return runs


def _search(ctx: _Context, report: Report) -> list:
    """The claim's own counterexample candidates (structured points), with what it tried."""
    try:
        candidates = list(ctx.claim.search(ctx.problem, ctx.backend, ctx.settings))
    except StepSkipped as exc:  # too large for the claim's own search: said, never attempted
        report.notes.append(str(exc))
        return []
    report.notes += [str(c.info["summary"]) for c in candidates if c.info.get("summary")]
    return candidates


def _beaten_by_search(ctx: _Context, report: Report) -> bool:
    """Does a structured candidate beat the claimed optimum beyond its float error bound?"""
    claimed = float(ctx.claimed)
    for cand in report.search_candidates:
        p = ctx.reduced(cand.point)
        if ctx.objective.value(p) < claimed - ctx.objective.error_bound(p):
            return True
    return False


def _e3(ctx: _Context, report: Report) -> Certificate | None:
    """E3: the first certificate kind of the claim that applies to the instance (a relaxation
    gives way to a later exact kind), compared with the claimed optimum."""
    cert: Certificate | None = None
    for kind in ctx.claim.certificates:
        _stage(ctx.progress, f"certificate ({kind})", 0)
        try:
            found = CERTIFIERS[kind](ctx.problem)
        except StepSkipped as exc:  # too large for this kind: said, never attempted
            report.notes.append(f"certificate {kind} skipped: {exc}")
            continue
        finally:
            _stage(ctx.progress, f"certificate ({kind})", 1)
        if found is not None and (cert is None or (found.exact and not cert.exact)):
            cert = found
        if cert is not None and cert.exact:
            break
    if cert is not None:
        if cert.point is not None:
            host = cert.point.map(lambda a: ctx.backend.asarray(np.asarray(a)))
            cert.point = ctx.reduced(host)
        _evaluate_certificate(report, cert, ctx.objective, ctx.claimed, ctx.tol)
    return cert


#: Runs at the prediction whose geometry E4 compares (the lowest objectives first).
E4_RUNS = 8


def _e4(ctx: _Context, report: Report, point: Params | None) -> None:
    """E4: the NC metrics against the predicted point of the run at the prediction that matches
    its geometry best (of the best run where none is at the prediction), and the verdict on it.

    The runs stop at a finite gradient tolerance, so their geometry is accurate only to what the
    conditioning allows (flat directions when the lambdas differ by orders of magnitude): one run
    at the prediction that matches suffices, and a mismatch refutes only beyond
    `geometry_refutes`."""
    runs = [r for r in report.runs if math.isfinite(r.objective)]
    if ctx.problem.activation != "linear":  # the metrics compare products W_M ... W_m
        report.notes.append(
            "E4 skipped: the NC metrics across layers are defined here for linear layers only"
        )
        return
    if not runs or point is None:
        _check_geometry(report, report.prediction, None, ctx.tol)
        return
    at = sorted((r for r in runs if r.outcome == "at-prediction"), key=lambda r: r.objective)
    candidates = at[:E4_RUNS] or [min(runs, key=lambda r: r.objective)]
    scored = []
    for run in candidates:
        try:
            rows = nc_metrics(ctx.objective, run.point, point)
        except Exception as exc:  # noqa: BLE001 - a metric failure is reported, not raised
            report.notes.append(f"metrics could not be computed: {exc}")
            continue
        scored.append((_geometry_error(rows, report.prediction), run, rows))
    if not scored:
        _check_geometry(report, report.prediction, None, ctx.tol)
        return
    _, run, report.metrics = min(scored, key=lambda s: math.inf if s[0] is None else s[0])
    _check_geometry(report, report.prediction, run, ctx.tol)


def _geometry_error(rows: list[dict], pred: Prediction) -> float | None:
    """The largest NC2/NC3 distance and relative error over all layers (`||W Hbar||` where the
    claim predicts the zero solution)."""
    if pred.zero:
        return max((r.get("norm_WH") or 0.0) for r in rows) if rows else 0.0
    values = [v for v in (worst(rows, "nc_"), worst(rows, "rel_")) if v is not None]
    return max(values) if values else None


def _conclude(ctx: _Context, report: Report, point: Params | None, e1_ok: bool) -> None:
    """The counterexample, an internal contradiction, the verdict and what to try next."""
    runs, cert = report.runs, report.certificate
    _find_counterexample(report, ctx, point, cert, e1_ok)
    report.contradiction = _contradiction(runs, cert)
    report.verdict, report.geometry_evidence = _verdict(report, runs, cert, e1_ok)
    if report.verdict == Verdict.INCONCLUSIVE and e1_ok and runs:
        if all(run.outcome == "worse" for run in runs):
            report.notes.append(
                "the predicted point attains the claimed optimum (E1) and every run ended above "
                "it, in worse local minima or saddles: more runs (--restarts), another --seed or "
                "other start scales (--scales) may reach it"
            )


def _stage(progress: Callable[[str, int, int], None] | None, name: str, done: int) -> None:
    """A one-step progress line naming the stage that runs (`done` 0 when it starts, 1 after)."""
    if progress is not None:
        progress(name, done, 1)


# ---- E1 ---------------------------------------------------------------------------------------
def _predicted_point(
    report: Report, claim: Claim, problem: Problem, backend: Backend
) -> Params | None:
    """The claim's predicted point, or None with a failed E1 check when it cannot be built.

    A `ValueError` from `minimiser` means the claim predicts a point that does not exist on this
    instance (e.g. more classes alive than the bottleneck allows): the claim is wrong here,
    which refutes it, not the verifier.  A point too large for memory (every sample's features)
    is not built: E1 is skipped, said in a check that neither passes nor fails.
    """
    try:
        full = FLOAT_BYTES * problem.point_entries()
        skip_unless_fits(WORKING_COPIES * full, "E1 (the claim's predicted point)")
    except StepSkipped as exc:  # said once, in the check (not also as a note)
        report.checks.append(
            Check(Evidence.PREDICTED_POINT, "E1 objective", None, None, None, f"skipped: {exc}")
        )
        return None
    try:
        return claim.minimiser(problem, backend)
    except ValueError as exc:
        report.checks.append(
            Check(
                Evidence.PREDICTED_POINT,
                "E1 objective",
                False,
                None,
                None,
                f"the claim's predicted point cannot be built on this instance: {exc}",
            )
        )
        return None


def _check_predicted_point(
    report: Report,
    objective: Objective,
    point: Params,
    claimed: mpmath.mpf,
    tol: Tolerances,
    settings: Settings,
) -> bool:
    value = objective.value(point)
    err = objective.error_bound(point)
    allowed = err + tol.objective * abs(float(claimed))
    diff = abs(value - float(claimed))
    ok_value = diff <= allowed
    report.checks.append(
        Check(
            Evidence.PREDICTED_POINT,
            "E1 objective",
            ok_value,
            diff,
            allowed,
            f"F(predicted point) = {value:.16g} vs claimed optimum {mpmath.nstr(claimed, 17)} "
            f"(evaluation error bound {err:.2e})",
        )
    )
    kinks = objective.kinks(point)
    if kinks:  # not differentiable here: a gradient from relu'(0) = 0 would prove nothing
        ok_grad = _one_sided_stationarity(report, objective, point, kinks, tol)
    else:
        grad_loss, grad_reg = objective.grad_parts(point)
        g = grad_loss.zip_map(grad_reg, lambda a, c: a + c)
        gnorm = norm(g)
        scale = norm(grad_loss) + norm(grad_reg)
        allowed_g = tol.gradient * scale + 100 * objective_eps(objective)
        ok_grad = gnorm <= allowed_g
        report.checks.append(
            Check(
                Evidence.PREDICTED_POINT,
                "E1 stationarity",
                ok_grad,
                gnorm,
                allowed_g,
                f"||grad F|| at the predicted point; the loss and regulariser gradients have "
                f"norms summing to {scale:.3e} and must cancel",
            )
        )
    ok_curv = True
    if settings.curvature_steps > 0:
        curv = extreme_curvature(objective, point, steps=settings.curvature_steps)
        allowed_c = tol.curvature * max(abs(curv.largest), 1e-300)
        ok_curv = curv.smallest >= -allowed_c
        report.checks.append(
            Check(
                Evidence.PREDICTED_POINT,
                "E1 curvature",
                ok_curv,
                curv.smallest,
                -allowed_c,
                f"smallest Ritz value of the Hessian after {curv.steps} Lanczos steps (largest "
                f"{curv.largest:.3e}); a negative value proves a descent direction, a non-negative "
                "one only that none was found",
            )
        )
        if not ok_curv:  # a direction of negative curvature (a descent direction may be kept)
            report.curvature_direction = curv.direction
    return ok_value and ok_grad and ok_curv


#: random directions (and their negatives) in which E1 takes one-sided derivatives at a kink
KINK_DIRECTIONS = 16


def _one_sided_stationarity(
    report: Report, objective: Objective, point: Params, kinks: int, tol: Tolerances
) -> bool:
    """First order at a kink: a local minimiser has `F'(p; v) >= 0` in every direction `v`.

    The one-sided derivatives are taken along the negative gradient of the smooth piece on which
    the kinked ReLUs are off, and along `KINK_DIRECTIONS` seeded random directions and their
    negatives.  A negative one, beyond rounding, proves a direction of descent (kept for the
    descent from the predicted point); none only says that none was found among them.
    """
    xp = objective.xp
    flat = Flattener(objective.problem, xp, objective.columns)
    grad_loss, grad_reg = objective.grad_parts(point)
    scale = norm(grad_loss) + norm(grad_reg)
    piece = flat.flatten(grad_loss.zip_map(grad_reg, lambda a, c: a + c))
    rng = np.random.default_rng(0)
    vectors = [-piece] if float(xp.linalg.vector_norm(piece)) > 0 else []
    for _ in range(KINK_DIRECTIONS):
        r = xp.asarray(rng.normal(size=flat.size), dtype=objective.dtype, device=objective.device)
        vectors += [r, -r]
    slopes = []
    for vec in vectors:
        unit = vec / xp.linalg.vector_norm(vec)
        slopes.append((objective.one_sided_derivative(point, flat.unflatten(unit)), unit))
    worst, direction = min(slopes, key=lambda s: s[0])
    allowed = tol.gradient * scale + 100 * objective_eps(objective)
    ok = worst >= -allowed
    report.checks.append(
        Check(
            Evidence.PREDICTED_POINT,
            "E1 stationarity",
            ok,
            worst,
            -allowed,
            f"{kinks} pre-activations of a ReLU are exactly 0 (the objective has a kink here): "
            f"smallest one-sided directional derivative over {len(vectors)} unit directions (the "
            "negative gradient of the piece with those ReLUs off, and random ones); a negative "
            "value proves a direction of descent, a non-negative one only that none was found",
        )
    )
    if not ok:
        report.curvature_direction = flat.unflatten(direction)
    return ok


def objective_eps(objective: Objective) -> float:
    return float(objective.xp.finfo(objective.dtype).eps)


# ---- E2 ---------------------------------------------------------------------------------------
def _classify(run: Run, objective: Objective, claimed: mpmath.mpf, tol: Tolerances) -> None:
    f_claim = float(claimed)
    if not math.isfinite(run.objective):
        run.outcome = "failed"
        return
    # computed where the run ran (in its worker process), else here
    err = run.error_bound if run.error_bound > 0 else objective.error_bound(run.point)
    run.error_bound = err
    if run.objective < f_claim - err:
        run.outcome = "better"
    elif abs(run.objective - f_claim) <= tol.at_prediction * abs(f_claim) + err:
        run.outcome = "at-prediction"
    else:
        run.outcome = "worse"
    run.structure = structure(objective, run.point)


def structure(objective: Objective, p: Params) -> dict[str, object]:
    """Which classes are alive and the rank of `W Hbar` (layer 1).

    A class is alive when its logit vector `W hbar_k` has norm above `1e-6`: the targets have
    norm 1, so this is a scale-free test (a relative test on `||hbar_k||` would call every class
    of the zero solution alive, its means being ~1e-9 of equal size).
    """
    # layer 1 only (every run is classified: the NC1 of all layers would cost more than this)
    if objective.relu:  # the class means of the logits: no end-to-end product to factor
        means = class_means(objective, objective.logits(p))
        return _logit_structure(to_host(means))
    hbar = class_means(objective, objective.first_features(p.H))
    classifier = p.Ws[-1]
    for w in reversed(p.Ws[:-1]):
        classifier = classifier @ w
    # the K x K logits factor through the width: with C = Q R (thin QR), the logits Q (R Hbar)
    # have the column norms and singular values of the small R Hbar (O(K d^2), not O(K^3))
    c, h = to_host(classifier), to_host(hbar)
    if c.shape[1] < c.shape[0]:
        c, h = np.eye(c.shape[1]), np.linalg.qr(c, mode="r") @ h
    return _logit_structure(c @ h)


def _logit_structure(logits: np.ndarray) -> dict[str, object]:
    """Alive classes (logit columns above 1e-6) and the numerical rank of the `K x K` logits."""
    alive = [k for k, v in enumerate(np.linalg.norm(logits, axis=0)) if v > 1e-6]
    sv = np.linalg.svd(logits, compute_uv=False)
    rank = int(np.sum(sv > 1e-6 * max(1.0, float(sv[0])))) if sv.size else 0
    return {"alive_classes": alive, "rank_WH": rank, "singular_values_WH": [float(s) for s in sv]}


# ---- E3 ---------------------------------------------------------------------------------------
def _evaluate_certificate(
    report: Report,
    cert: Certificate,
    objective: Objective,
    claimed: mpmath.mpf,
    tol: Tolerances,
) -> None:
    if cert.point is not None:  # on the backend, in the check's parameterisation (`_e3`)
        cert.primal = objective.value(cert.point)
        cert.primal_error = objective.error_bound(cert.point)
        cert.gap = abs(cert.primal - cert.bound) / max(abs(cert.bound), 1e-300)
    compare_certificate(report, cert, claimed, tol)


def compare_certificate(
    report: Report, cert: Certificate, claimed: mpmath.mpf, tol: Tolerances
) -> None:
    """The E3 check: the claimed optimum against the certificate's (exact) bound."""
    exact = cert.bound_exact if cert.bound_exact is not None else mpmath.mpf(cert.bound)
    diff = float(claimed - exact)
    report.claimed_minus_bound = diff
    allowed = tol.certificate * abs(float(exact))
    report.checks.append(
        Check(
            Evidence.CERTIFICATE,
            "E3 certificate",
            abs(diff) <= allowed,
            diff,
            allowed,
            f"claimed optimum minus the {cert.kind} optimum ({mpmath.nstr(exact, 17)})",
        )
    )


# ---- E4 ---------------------------------------------------------------------------------------
def _check_geometry(report: Report, pred: Prediction, best: Run | None, tol: Tolerances) -> None:
    if best is None:
        return
    skipped = (
        "the claim says the minimiser is not unique"
        if not pred.unique
        else "the best run did not reach the prediction"
        if best.outcome != "at-prediction"
        else None
    )
    if skipped is not None:
        report.checks.append(
            Check(Evidence.GEOMETRY, "E4 geometry", None, None, tol.geometry, f"skipped: {skipped}")
        )
        return
    rows = report.metrics or []
    if pred.zero:
        size = max((r.get("norm_WH") or 0.0) for r in rows) if rows else 0.0
        ok = size <= tol.geometry
        report.checks.append(
            Check(
                Evidence.GEOMETRY,
                "E4 geometry",
                ok,
                size,
                tol.geometry,
                "the best run should be the zero solution: largest ||W Hbar||",
            )
        )
        return
    d = worst(rows, "nc_")
    r = worst(rows, "rel_")
    value = max(v for v in (d, r) if v is not None) if (d is not None or r is not None) else None
    ok = value is not None and value <= tol.geometry
    report.checks.append(
        Check(
            Evidence.GEOMETRY,
            "E4 geometry",
            ok,
            value,
            tol.geometry,
            f"largest NC2/NC3 distance ({d:.2e}) and relative error ({r:.2e}) over all layers "
            f"against the claimed {pred.geometry}"
            if value is not None
            else "no metric defined",
        )
    )


# ---- counterexample ---------------------------------------------------------------------------
def _find_counterexample(
    report: Report, ctx: _Context, point: Params | None, cert: Certificate | None, e1_ok: bool
) -> None:
    """The best candidate below the claimed optimum that the high-precision certificate
    confirms (points in the check's parameterisation; the counterexample is the full point)."""
    objective, settings = ctx.objective, ctx.settings
    f_claim = float(ctx.claimed)
    candidates: list[tuple[float, float, Params, str]] = []
    for run in report.runs:
        if run.outcome == "better":
            candidates.append(
                (
                    run.objective,
                    run.error_bound,
                    run.point,
                    f"random-start run {run.index} (scale {run.scale})",
                )
            )
    for cand in report.search_candidates:
        p = ctx.reduced(cand.point)
        value = objective.value(p)
        err = objective.error_bound(p)
        if value < f_claim - err:
            candidates.append((value, err, p, cand.origin))
    if cert is not None and cert.point is not None and cert.primal is not None:
        if cert.primal < f_claim - cert.primal_error:
            candidates.append(
                (cert.primal, cert.primal_error, cert.point, f"{cert.kind} certificate's minimiser")
            )
    if not e1_ok and not candidates and point is not None:
        # the prediction is not a minimiser: descend from it (labelled as such, not E2 evidence)
        start = point
        if report.curvature_direction is not None:
            start = point.zip_map(report.curvature_direction, lambda a, d: a + 1e-3 * d)
        end, info = descend(objective, start, max_iter=settings.max_iter)
        value = info["objective"]
        err = objective.error_bound(end)
        if value < f_claim - err:
            candidates.append((value, err, end, "descent from the predicted point"))
    # the best candidate that the high-precision certificate confirms (see `_certify`),
    # preferring one certified in exact/interval arithmetic over one certified with a float bound
    confirmed = []
    for value, err, p, origin in sorted(candidates, key=lambda c: c[0]):
        certificate = _certify(report, ctx.lifted(p), value, err)
        if certificate is not None and not certificate["certified"]:
            report.notes.append(
                f"a point from {origin} beats the claimed optimum in float64 but not beyond the "
                f"high-precision bound (gap {certificate['gap']:.3e}, bound "
                f"{certificate['bound']:.3e}): not counted as a counterexample"
            )
            continue
        exact = certificate is not None and bool(certificate.get("exact"))
        confirmed.append((not exact, value, err, p, origin, certificate))
    if confirmed:
        _, value, err, p, origin, certificate = min(confirmed, key=lambda c: (c[0], c[1]))
        report.counterexample = Counterexample(
            objective=value,
            claimed=f_claim,
            gap=f_claim - value,
            error_bound=err,
            origin=origin,
            structure=structure(objective, p),
            point=ctx.lifted(p),
            certificate=certificate,
        )


def _certify(report: Report, p: Params, value: float, err: float) -> dict | None:
    """The counterexample certificate of `ncverify.model.exact.certify_point` (None if it failed).

    Exact/interval evaluation where the point's features are class-constant, else the float
    value with its proven error bound; compared with the claim's enclosure of its optimum.
    """
    from ncverify.model.exact import certify_point

    if report.prediction is None:
        return None
    try:
        return certify_point(report.problem, report.prediction, p.map(to_host), value, err)
    except Exception as exc:  # noqa: BLE001 - reported; the float comparison still stands
        report.notes.append(f"the high-precision certificate could not be computed: {exc}")
        return None


# ---- verdict ----------------------------------------------------------------------------------
def _contradiction(runs: list[Run], cert: Certificate | None) -> str | None:
    """A run below a rigorous lower bound by more than its proven error: a verifier bug."""
    if cert is None or not cert.rigorous:
        return None
    for run in runs:
        if math.isfinite(run.objective) and run.objective < cert.bound - run.error_bound:
            return (
                f"random-start run {run.index} ends at {run.objective!r}, below the rigorous "
                f"{cert.kind} lower bound {cert.bound!r} by more than its evaluation error "
                f"bound {run.error_bound:.3e}: the verifier contradicts itself; no verdict is "
                "trustworthy, please report this instance"
            )
    return None


def value_proven(report: Report, cert: Certificate | None, e1_ok: bool) -> bool:
    """The claimed optimum is proven: E1 holds and a rigorous certificate that determines the
    optimum (exact, with its own bracket inside the tolerance) matches it."""
    if cert is None or not (cert.rigorous and cert.exact) or not e1_ok:
        return False
    if cert.gap is not None and cert.gap > report.tolerances.certificate:
        return False
    return any(c.evidence == Evidence.CERTIFICATE and c.passed is True for c in report.checks)


def _verdict(
    report: Report, runs: list[Run], cert: Certificate | None, e1_ok: bool
) -> tuple[Verdict, GeometryEvidence | None]:
    """The verdict and, where the claim holds, how its geometry is established."""
    failed = {c.evidence for c in report.checks if c.passed is False}
    if report.counterexample is not None or Evidence.PREDICTED_POINT in failed:
        return Verdict.REFUTED, None
    if Evidence.CERTIFICATE in failed and cert is not None:
        below_bound = report.claimed_minus_bound is not None and report.claimed_minus_bound < 0
        # an exact certificate pins the optimum only when its own bracket [bound, primal] is
        # narrower than the tolerance (a convex-dual bound with a loose gap pins nothing)
        pinned = cert.exact and (cert.gap is None or cert.gap <= report.tolerances.certificate)
        if cert.rigorous and (below_bound or pinned):
            # a rigorous lower bound above the claimed value, or an exact optimum that differs
            return Verdict.REFUTED, None
        return Verdict.INCONCLUSIVE, None  # a loose bound proves nothing either way
    at = [r for r in runs if r.outcome == "at-prediction"]
    if Evidence.GEOMETRY in failed and at:
        return Verdict.REFUTED, None
    if report.contradiction is not None:
        return Verdict.INCONCLUSIVE, None
    unique = report.prediction is not None and report.prediction.unique
    geometry_seen = any(c.evidence == Evidence.GEOMETRY and c.passed for c in report.checks)
    if at and (geometry_seen or not unique):  # E4 matched a run at the prediction
        verdict = Verdict.CERTIFIED if cert is not None else Verdict.CONSISTENT
        return verdict, GeometryEvidence.RUN if unique else GeometryEvidence.NOT_UNIQUE
    # no run reached the prediction (or none matched its geometry closely enough to tell), or
    # none ran: only a certificate can still decide the claim
    proven = value_proven(report, cert, e1_ok)
    if at and not proven:  # runs reach the claimed value; neither geometry nor value is proven
        return Verdict.CONSISTENT, None
    if runs and (not proven or any(r.outcome == "failed" for r in runs)):
        return Verdict.INCONCLUSIVE, None
    if not proven and not e1_ok:  # E1 skipped (too large), no runs: no evidence either way
        return Verdict.INCONCLUSIVE, None
    if not proven:  # no runs and no proven value: E1 alone, nothing contradicts the claim
        return Verdict.CONSISTENT, None
    if not unique:
        return Verdict.CERTIFIED, GeometryEvidence.NOT_UNIQUE
    if cert is not None and cert.unique:
        return Verdict.CERTIFIED, GeometryEvidence.CERTIFIED_UNIQUE
    return Verdict.CONSISTENT, GeometryEvidence.ATTAINED
