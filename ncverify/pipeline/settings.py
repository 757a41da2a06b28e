"""What one verification may do: the run options of `check` as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

from ncverify.claim import SearchBudget
from ncverify.evidence.optimize import DEFAULT_SCALES
from ncverify.kinds import RunSettings
from ncverify.model.reduction import PARAMETERISATIONS, Parameterisation


@dataclass(frozen=True)
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
    # where `ncverify.verify.verify` saves a counterexample (the pipeline itself writes nothing)
    save_dir: str | None = None
    force: bool = False  # run every step even above its size limit (`ncverify.limits`)
    # each random-start run descends at lambda/8 first and ladders up past the thresholds
    # (`ncverify.evidence.optimize.Continuation`); False: one plain descent from the start
    continuation: bool = True
    # what the runs, E1 and E4 optimise and evaluate: None for the default of the head (the
    # exact class-mean reduction for linear heads, `ncverify.model.reduction`), or "full"
    parameterisation: Parameterisation | None = None
    # the claim's own structured candidates (`Claim.search`); off, only claim-agnostic evidence
    # remains: what the search finds by itself can then be measured
    claim_candidates: bool = True
    # starts of the batched claim-agnostic search (`ncverify.evidence.batched_search`); 0: off
    search_starts: int = 256
    # boxes the branch-and-bound certificate at depth may split (`gram-branch-and-bound`);
    # 0: it does not run (it takes seconds to minutes where it applies)
    certificate_boxes: int = 0

    def __post_init__(self) -> None:
        if self.parameterisation is not None and self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(
                f"parameterisation must be one of {', '.join(PARAMETERISATIONS)}, "
                f"not {self.parameterisation!r}."
            )

    def runs(self) -> RunSettings:
        """What the kind's runs read."""
        return RunSettings(
            seed=self.seed,
            scales=tuple(self.scales),
            max_iter=self.max_iter,
            continuation=self.continuation,
            curvature_steps=self.curvature_steps,
            parameterisation=self.parameterisation,
            search_starts=self.search_starts if self.optimise else 0,
        )

    def search_budget(self) -> SearchBudget:
        """What a claim's own search may do: random starts only where the runs are on."""
        return SearchBudget(seed=self.seed, random_starts=self.restarts if self.optimise else 0)
