"""The verification pipeline: claim + problem + backend -> Report (verdict + evidence).

One orchestrator for every kind of problem (`ncverify.kinds`): it asks the claim for its
prediction and its point, opens a session of the instance's kind, and runs the evidence steps in
order — E1 at the predicted point, the claim's own structured candidates, E2 the random-start
runs (escalated while none reaches the prediction), E3 the claim's certificates, E4 the geometry
— each returning a frozen result; the counterexample and the verdict follow from them by the
rules of `ncverify.pipeline.verdict`, and the report is assembled once, at the end.  Every step
is bounded by the cost model (`ncverify.limits`) before it starts; a step too large for the
instance is skipped with a note.  The pipeline writes nothing (`ncverify.verify.verify` saves a
counterexample where asked).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ncverify.backend import Backend
from ncverify.claim import Candidate, Claim, NoPrediction, Prediction
from ncverify.evidence.batched_search import BatchedSearch
from ncverify.evidence.certificates import BUDGETED, CERTIFIERS, Certificate
from ncverify.evidence.coverage import coverage
from ncverify.evidence.optimize import Run, single_threaded_blas
from ncverify.evidence.results import Check, Evidence, PredictedPoint, Tolerances
from ncverify.evidence.workers import default_jobs
from ncverify.kinds import KindSession, kind_mismatch, kind_of
from ncverify.limits import (
    FLOAT_BYTES,
    HOW_TO_FORCE,
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
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.pipeline import counterexample
from ncverify.pipeline.settings import Settings
from ncverify.pipeline.verdict import Evidences, compare_certificate, contradiction, verdict
from ncverify.report import Report, Verdict

Progress = Callable[[str, int, int], None]


@single_threaded_blas
def verify(
    claim: Claim,
    problem: Problem,
    backend: Backend | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check `claim` on `problem` and return the report.

    Raises `ValueError` when the claim names a certificate kind that does not exist (a
    misspelling would otherwise drop the certificate and silently weaken the verdict), and
    `ncverify.limits.InputTooLarge` when no check of the instance could hold its arrays.
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
        return _Verification(claim, problem, backend or Backend.create(), settings, progress).run()


def _settles(cert: Certificate | None, prediction: Prediction, tol: Tolerances) -> str | None:
    """The kind of an exact certificate whose optimum the claim attains (None if there is
    none): then no search can find a better point, and the random-start runs alone remain as
    the independent check that would expose a wrong certificate."""
    if cert is None or not cert.exact:
        return None
    return cert.kind if compare_certificate(cert, prediction.objective, tol).check.passed else None


def affordable(problem: Problem, settings: Settings) -> None:
    """Raise `ncverify.limits.InputTooLarge` (bad input) when no check of `problem` could hold
    its arrays: one point of the smallest parameterisation (the weights and the class means), or
    with `parameterisation="full"` one point and the targets of every sample.  Steps that need
    more than the first skip themselves with a note (`skip_unless_fits`)."""
    check_memory(FLOAT_BYTES * problem.point_entries(problem.K), "one point of this instance")
    if settings.parameterisation == "full":
        full = problem.point_entries() + problem.K * problem.N  # the point and the one-hot Y
        check_memory(FLOAT_BYTES * full, "the full parameterisation (every sample's features)")


@dataclass
class _Scratch:
    """What the steps of one verification have said so far (the report is made from it)."""

    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)


class _Verification:
    """One run of the pipeline: the steps in order, then the report."""

    def __init__(
        self,
        claim: Claim,
        problem: Problem,
        backend: Backend,
        settings: Settings,
        progress: Progress | None,
    ) -> None:
        self.claim, self.problem, self.backend = claim, problem, backend
        self.settings, self.progress = settings, progress
        self.tol = Tolerances.for_eps(backend.eps)
        self.said = _Scratch()
        self.t0 = time.perf_counter()

    def run(self) -> Report:
        hypotheses = tuple(self.claim.hypotheses(self.problem))
        if hypotheses and not self.settings.probe:
            return self._report(Verdict.NOT_APPLICABLE, hypotheses=hypotheses)
        mismatch = kind_mismatch(self.claim.loss, self.problem.loss)
        if mismatch is not None:  # different problems have different optima: nothing to compare
            self.said.notes.append(mismatch)
            return self._report(Verdict.NOT_APPLICABLE, hypotheses=hypotheses)
        with self._timed("closed_form"):
            try:
                prediction = self.claim.closed_form(self.problem)
            except NoPrediction as exc:  # a probe where the claim predicts nothing
                self.said.notes.append(str(exc))
                return self._report(Verdict.NOT_APPLICABLE, hypotheses=hypotheses)
        return self._evidence(prediction, hypotheses)

    def _evidence(self, prediction: Prediction, hypotheses: tuple[str, ...]) -> Report:
        with self._timed("predicted_point"):  # E1
            self._stage("predicted point (E1)", 0)
            predicted = self._predicted_point()
            session = kind_of(self.problem.loss).open(
                self.problem, self.backend, prediction, predicted, self.tol, self.settings.runs()
            )
            e1 = session.predicted_point(predicted)
            self.said.checks += e1.checks
            self._stage("predicted point (E1)", 1)
        cert = None
        if self.settings.certificate:
            with self._timed("certificate"):  # E3
                cert = self._certificate(session)
        claimed_minus_bound = self._compare(cert, prediction)
        candidates, search = self._candidates(session, _settles(cert, prediction, self.tol))
        runs: tuple[Run, ...] = ()
        exact = kind_of(self.problem.loss).exact_values
        if self.settings.optimise and not self._refuted_by_search(session, candidates, e1, exact):
            if self._runs_affordable(session):
                with self._timed("optimise"):  # E2
                    beaten = counterexample.beaten_by_search(session, candidates)
                    runs = self._runs(session, beaten)
        geometry = session.geometry(e1, runs)  # E4
        self.said.checks += geometry.checks
        self.said.notes += geometry.notes
        found = counterexample.find(session, runs, candidates, cert, e1, exact)
        self.said.notes += session.notes + list(found.notes)
        ev = Evidences(
            tuple(self.said.checks),
            runs,
            cert,
            e1.ok,
            found.counterexample is not None,
            contradiction(runs, cert) is not None,
            claimed_minus_bound,
            prediction,
            self.tol,
            searched_to_prediction=search is not None and search.coverage.at_prediction > 0,
        )
        verdict_, geometry_evidence = verdict(ev)
        self._hint(verdict_, e1, runs)
        return self._report(
            verdict_,
            hypotheses=hypotheses,
            prediction=prediction,
            grams=e1.grams,
            parameterisation=session.parameterisation,
            runs=runs,
            start_scales=session.start_scales(len(runs)),
            runs_method=session.runs_method(len(runs)),
            coverage=coverage(runs, self.tol.at_prediction) if runs else None,
            search=search,
            certificate=cert,
            metrics=geometry.metrics,
            counterexample=found.counterexample,
            claimed_minus_bound=claimed_minus_bound,
            geometry_evidence=geometry_evidence,
            contradiction=contradiction(runs, cert),
        )

    # ---- E1 -------------------------------------------------------------------------------------
    def _predicted_point(self) -> Params | None:
        """The claim's predicted point (full), or None: too large for memory (E1 skipped, said
        in a check that neither passes nor fails), or not buildable on this instance (a
        `ValueError` from `minimiser`: the claim predicts a point that does not exist here, e.g.
        more classes alive than the bottleneck allows, which refutes it)."""
        try:
            full = FLOAT_BYTES * self.problem.point_entries()
            skip_unless_fits(WORKING_COPIES * full, "E1 (the claim's predicted point)")
        except StepSkipped as exc:  # said once, in the check (not also as a note)
            self._check(None, f"skipped: {exc}")
            return None
        try:
            return self.claim.minimiser(self.problem, self.backend)
        except ValueError as exc:
            self._check(
                False, f"the claim's predicted point cannot be built on this instance: {exc}"
            )
            return None

    def _check(self, passed: bool | None, detail: str) -> None:
        self.said.checks.append(
            Check(Evidence.PREDICTED_POINT, "E1 objective", passed, None, None, detail)
        )

    # ---- the claim's search ---------------------------------------------------------------------
    def _search(self) -> tuple[Candidate, ...]:
        if not self.settings.claim_candidates:
            self.said.notes.append(
                "the claim's own candidates are off (--no-claim-candidates): only "
                "claim-agnostic evidence"
            )
            return ()
        budget = self.settings.search_budget()
        try:
            found = tuple(self.claim.search(self.problem, self.backend, budget))
        except StepSkipped as exc:  # too large for the claim's own search: said, never attempted
            self.said.notes.append(str(exc))
            return ()
        self.said.notes += [str(c.info["summary"]) for c in found if c.info.get("summary")]
        return found

    def _candidates(
        self, session: KindSession, settled: str | None
    ) -> tuple[tuple[Candidate, ...], BatchedSearch | None]:
        """The claim's own structured candidates, then the lowest ends of the batched search
        (skipped where an exact certificate already settles the claim: `settled` says which)."""
        with self._timed("search"):
            candidates = self._search()
        search = None
        if settled is not None and self.settings.search_starts:
            self.said.notes.append(
                f"the batched search is skipped: the exact {settled} certificate determines the "
                "optimum, and the claim attains it"
            )
        elif self.settings.optimise and self.settings.search_starts:
            with self._timed("batched_search"):
                search = self._batched_search(session)
        if search is not None:
            candidates += tuple(
                Candidate(end.point.map(self.backend.asarray), end.origin) for end in search.ends
            )
        return candidates, search

    def _batched_search(self, session: KindSession) -> BatchedSearch | None:
        """The kind's batched search (None where it has none or the instance is too large)."""
        try:
            return session.batched_search(self.progress)
        except StepSkipped as exc:
            self.said.notes.append(str(exc))
            return None

    def _refuted_by_search(
        self,
        session: KindSession,
        candidates: tuple[Candidate, ...],
        e1: PredictedPoint,
        exact: bool,
    ) -> bool:
        """Whether a candidate of the searches is already a certified counterexample: then the
        random-start runs could add nothing to the verdict, and are skipped (said in a note)."""
        if not counterexample.beaten_by_search(session, candidates):
            return False
        found = counterexample.find(session, (), candidates, None, e1, exact)
        if found.counterexample is None:
            return False
        self.said.notes.append(
            f"the random-start runs (E2) are skipped: a point from {found.counterexample.origin} "
            "already beats the claimed optimum, certified"
        )
        return True

    # ---- E2 -------------------------------------------------------------------------------------
    def _runs_affordable(self, session: KindSession) -> bool:
        try:
            check_runs_size(session.run_cost().evaluation_madds)
            skip_unless_fits(
                self._runs_bytes(session, self.settings.restarts), "the random-start runs (E2)"
            )
            self._max_iter(session, self.settings.restarts)
        except StepSkipped as exc:
            self.said.notes.append(str(exc))
            return False
        return True

    def _runs_bytes(self, session: KindSession, restarts: int) -> int:
        """Memory of `restarts` runs: the working copies of the runs in flight, and every end
        point (each run's is kept for classification and E4)."""
        point = session.run_cost().point_bytes
        return point * (WORKING_COPIES * default_jobs(self.backend.name, restarts) + restarts)

    def _max_iter(self, session: KindSession, restarts: int) -> int:
        """Iterations a descent of `restarts` runs may take (`ncverify.limits`)."""
        cost = session.run_cost()
        return descent_iterations(
            restarts, cost.descents, cost.evaluation_madds, self.settings.max_iter
        )

    def _affordable_runs(self, session: KindSession, restarts: int) -> bool:
        if not fits_in_memory(self._runs_bytes(session, restarts)):
            return False
        try:
            self._max_iter(session, restarts)
        except StepSkipped:
            return False
        return True

    def _runs(self, session: KindSession, beaten: bool) -> tuple[Run, ...]:
        """Seeded random-start runs, each classified; doubled (`escalate` times at most) while
        none reaches the prediction or beats it, unless a structured candidate of the claim's
        search already beats it (`beaten`): more runs would add nothing to that counterexample."""
        restarts = self.settings.restarts
        for attempt in range(self.settings.escalate + 1):
            runs = self._batch(session, restarts)
            outcomes = {run.outcome for run in runs}
            if outcomes & {"at-prediction", "better"} or attempt == self.settings.escalate:
                return runs
            why = self._no_escalation(session, restarts, beaten)
            if why is not None:
                self.said.notes.append(why)
                return runs
            # no run reached the prediction and none beat it: gather more evidence before saying
            # inconclusive (twice the runs, over the same range of start scales)
            self.said.notes.append(
                f"none of {restarts} random-start runs reached the prediction or beat it "
                f"({', '.join(sorted(outcomes))}); escalated to {2 * restarts} runs"
            )
            restarts *= 2
        return runs

    def _batch(self, session: KindSession, restarts: int) -> tuple[Run, ...]:
        max_iter = self._max_iter(session, restarts)
        if max_iter < self.settings.max_iter:
            self.said.notes.append(
                f"each descent of the {restarts} random-start runs is capped at {max_iter} "
                f"iterations (not {self.settings.max_iter}) so that their worst case stays within "
                f"the cost limit of the search; {HOW_TO_FORCE}"
            )
        return session.runs(restarts, max_iter, self.progress)

    def _no_escalation(self, session: KindSession, restarts: int, beaten: bool) -> str | None:
        """Why the runs are not doubled, or None."""
        none = f"none of {restarts} random-start runs reached the prediction or beat it"
        if beaten:
            return f"{none}; not escalated, since a candidate of the claim's own search beats it"
        if 2 * restarts > MAX_RUNS or not self._affordable_runs(session, 2 * restarts):
            return (
                f"{none}; not escalated to {2 * restarts} runs, above what one check may hold "
                f"({MAX_RUNS} runs, their points within the memory budget and their work within "
                "the cost limit of the search)"
            )
        return None

    # ---- E3 -------------------------------------------------------------------------------------
    def _certificate(self, session: KindSession) -> Certificate | None:
        """The first certificate kind of the claim that applies to the instance (a relaxation
        gives way to a later exact kind), with its own point evaluated by the kind."""
        cert: Certificate | None = None
        skipped = []
        for kind in self.claim.certificates:
            self._stage(f"certificate ({kind})", 0)
            budget: dict[str, object] = {}
            if kind in BUDGETED:
                budget = {"boxes": self.settings.certificate_boxes, "progress": self.progress}
            try:
                found = CERTIFIERS[kind](self.problem, **budget)
            except StepSkipped as exc:  # too large for this kind, or not asked for: said
                self.said.notes.append(f"certificate {kind} skipped: {exc}")
                skipped.append(kind)
                continue
            finally:
                self._stage(f"certificate ({kind})", 1)
            if found is not None and (cert is None or (found.exact and not cert.exact)):
                cert = found
            if cert is not None and cert.exact:
                break
        if cert is None:
            if set(self.claim.certificates) - set(skipped):
                kinds = ", ".join(k for k in self.claim.certificates if k not in skipped)
                self.said.notes.append(
                    f"no certificate applies: {kinds} does not cover this instance"
                )
            return None
        return session.certificate_point(cert)

    def _compare(self, cert: Certificate | None, prediction: Prediction) -> float | None:
        if cert is None:
            return None
        compared = compare_certificate(cert, prediction.objective, self.tol)
        self.said.checks.append(compared.check)
        return compared.claimed_minus_bound

    # ---- the end --------------------------------------------------------------------------------
    def _hint(self, verdict_: Verdict, e1: PredictedPoint, runs: tuple[Run, ...]) -> None:
        if verdict_ == Verdict.INCONCLUSIVE and e1.ok and runs:
            if all(run.outcome == "worse" for run in runs):
                self.said.notes.append(
                    "the predicted point attains the claimed optimum (E1) and every run ended "
                    "above it, in worse local minima or saddles: more runs (--restarts), another "
                    "--seed or other start scales (--scales) may reach it"
                )

    def _report(self, verdict_: Verdict, **parts: object) -> Report:
        self.said.timing["total"] = time.perf_counter() - self.t0
        return Report(
            claim=self.claim,
            problem=self.problem,
            backend=self.backend,
            probe=self.settings.probe,
            tolerances=self.tol,
            verdict=verdict_,
            checks=tuple(self.said.checks),
            notes=tuple(self.said.notes),
            timing=dict(self.said.timing),
            **parts,  # type: ignore[arg-type]
        )

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.said.timing[phase] = time.perf_counter() - t0

    def _stage(self, name: str, done: int) -> None:
        """A one-step progress line naming the stage that runs (`done` 0 when it starts, 1
        after)."""
        if self.progress is not None:
            self.progress(name, done, 1)
