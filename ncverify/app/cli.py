"""The `ncverify` command line: list, show, derive, check, predict, sweep, measure, recheck.

Exit codes of `check` and `recheck`: 0 certified/consistent, 1 refuted, 2 bad input,
3 inconclusive, 4 not-applicable, 70 an internal error (a bug in ncverify, never a verdict).
`check --all` exits 0 when every instance ran, 3 when any was inconclusive, 2 on bad input.  Bad
input is one sentence on stderr, never a traceback; output paths are checked before any
computation.

A CLAIM argument is a claim's id, a claim file (`path/to/my_claim.py`) or `module:attribute`
(`ncverify.app.claims`).  The options shared by several commands are declared once, as the fields
of an option group (`ProblemOptions`, `SweepProblemOptions`, `RunOptions`), which `with_options`
turns into each command's options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import math
import signal
import sys
import threading
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
from rich.console import Console

from ncverify.app import render
from ncverify.backend import BACKENDS, DTYPES, Backend, BackendError
from ncverify.model.problem import ACTIVATIONS, BIAS_MODES, LOSSES, Problem, ProblemError
from ncverify.model.problem import Loss as ModelLoss
from ncverify.model.reduction import PARAMETERISATIONS
from ncverify.report import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Iterator
    from types import FrameType

    from ncverify.claim import Claim
    from ncverify.verify import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Verify Neural Collapse claims about global minimisers of deep linear networks.",
)
out = Console(width=None if sys.stdout.isatty() else 150)  # files and pipes: wide tables
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from ncverify.report import version

        print(f"ncverify {version()}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Verify Neural Collapse claims about global minimisers of deep linear networks."""


def _choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A CLI choice type made from the tuple that is the choice's one home (the model's losses
    and bias modes, the backends and dtypes), so that `--help` lists exactly what is accepted."""
    return StrEnum(name, {v.replace("-", "_"): v for v in values})


Bias = _choices("Bias", BIAS_MODES)
Loss = _choices("Loss", LOSSES)
Activation = _choices("Activation", ACTIVATIONS)
BackendName = _choices("BackendName", BACKENDS)
Dtype = _choices("Dtype", DTYPES)
ParameterisationName = _choices("ParameterisationName", ("auto", *PARAMETERISATIONS))


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    latex = "latex"


def _opt(*names: str, metavar: str, help: str) -> Any:  # noqa: A002
    return typer.Option(*names, metavar=metavar, help=help)


# ---- problem options (shared by check, predict and sweep; lambdas stay text: read exactly) ------
CountsOpt = Annotated[
    str | None, _opt(metavar="INT,INT,...", help="Class counts, e.g. 200,100,50,50.")
]
ClassesOpt = Annotated[
    str | None, _opt(metavar="INT", help="Number of classes K (with --samples).")
]
SamplesOpt = Annotated[
    str | None, _opt(metavar="INT", help="Samples per class n (with --classes).")
]
DepthOpt = Annotated[str | None, _opt(metavar="INT", help="Number of linear layers M.")]
WidthOpt = Annotated[
    str | None, _opt(metavar="INT", help="Feature dimension and every hidden width.")
]
WidthsOpt = Annotated[str | None, _opt(metavar="INT,INT,...", help="d,d_1,...,d_{M-1}.")]
LambdaWOpt = Annotated[
    str | None,
    _opt("--lambda-w", metavar="DECIMAL[,...]", help="One value or one per layer (read exactly)."),
]
LambdaHOpt = Annotated[
    str | None, _opt("--lambda-h", metavar="DECIMAL", help="Feature weight decay (read exactly).")
]
LambdaBOpt = Annotated[
    str | None,
    _opt("--lambda-b", metavar="DECIMAL", help="Bias weight decay (regularised bias)."),
]
BiasOpt = Annotated[Bias | None, typer.Option(help="The last-layer bias.")]
LossOpt = Annotated[Loss | None, typer.Option(help="The loss.")]
ActivationOpt = Annotated[
    Activation | None,
    typer.Option(help="Between the layers: linear (the default) or relu."),
]
RadiusWOpt = Annotated[
    str | None,
    _opt("--radius-w", metavar="DECIMAL", help="Norm of every classifier row (normalised-ce)."),
]
RadiusHOpt = Annotated[
    str | None,
    _opt("--radius-h", metavar="DECIMAL", help="Norm of every feature (normalised-ce)."),
]
SmoothingOpt = Annotated[
    str | None,
    _opt(
        "--smoothing",
        metavar="DECIMAL",
        help="Label smoothing's alpha in (0, 1): targets (1 - alpha) e_y + alpha/K (--loss ls).",
    ),
]
FocusingOpt = Annotated[
    str | None,
    _opt(
        "--focusing",
        metavar="DECIMAL",
        help="Focal loss's gamma in [1, 10]: the loss -(1 - p_y)^gamma log p_y (--loss focal).",
    ),
]
TemperatureOpt = Annotated[
    str | None,
    _opt(
        "--temperature",
        metavar="DECIMAL",
        help="The contrastive loss's temperature tau in [1/100, 100] (--loss supcon).",
    ),
]
# ---- the same as ranges (sweep: `ncverify.app.sweep.RANGE_OPTIONS`) -------------------------------
ClassesRangeOpt = Annotated[
    str | None,
    _opt(metavar="INT|RANGE", help="Number of classes K (with --samples); may be a range."),
]
SamplesRangeOpt = Annotated[
    str | None,
    _opt(metavar="INT|RANGE", help="Samples per class n (with --classes); may be a range."),
]
DepthRangeOpt = Annotated[
    str | None, _opt(metavar="INT|RANGE", help="Number of linear layers M; may be a range.")
]
WidthRangeOpt = Annotated[
    str | None,
    _opt(metavar="INT|RANGE", help="Feature dimension and every hidden width; may be a range."),
]
LambdaWRangeOpt = Annotated[
    str | None,
    _opt(
        "--lambda-w",
        metavar="DECIMAL[,...]|RANGE",
        help="One value, one per layer, or a range start:stop:count[:log] (every layer).",
    ),
]
LambdaHRangeOpt = Annotated[
    str | None,
    _opt(
        "--lambda-h",
        metavar="DECIMAL|RANGE|tied",
        help="Feature weight decay, a range, or tied (= lambda_W).",
    ),
]
LambdaBRangeOpt = Annotated[
    str | None,
    _opt("--lambda-b", metavar="DECIMAL|RANGE", help="Bias weight decay; may be a range."),
]
# ---- run options (shared by check and sweep) ----------------------------------------------------
RestartsOpt = Annotated[int, typer.Option(help="Random-start optimiser runs.")]
SearchStartsOpt = Annotated[
    int,
    typer.Option(
        help="Starts of the batched claim-agnostic search, all descended together (0: off).",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of every random choice.")]
ProbeOpt = Annotated[
    bool, typer.Option("--probe", help="Run the checks even outside the hypotheses.")
]
NoCertificateOpt = Annotated[bool, typer.Option("--no-certificate", help="Skip E3.")]
CertificateBoxesOpt = Annotated[
    int,
    typer.Option(
        help="Boxes the branch-and-bound certificate at depth may split (three or four classes, "
        "cross-entropy or max-margin; 0: it does not run). A few thousand certify three classes.",
    ),
]
NoOptimiseOpt = Annotated[
    bool, typer.Option("--no-optimise", help="Skip the random-start runs (E2).")
]
NoContinuationOpt = Annotated[
    bool,
    typer.Option(
        "--no-continuation",
        help="Each run one plain descent from its random start (no lambda continuation).",
    ),
]
NoClaimCandidatesOpt = Annotated[
    bool,
    typer.Option(
        "--no-claim-candidates",
        help="Skip the claim's own structured candidates (its witness codes and families): "
        "only claim-agnostic evidence remains, to measure what the search finds by itself.",
    ),
]
ParameterisationOpt = Annotated[
    ParameterisationName,
    typer.Option(
        help="What the runs optimise: auto (the weights alone for MSE, the class means for CE: "
        "exact reductions), or full (every sample's features).",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Run every step even above its size limit (may take very long)."),
]
BackendOpt = Annotated[BackendName, typer.Option(help="Array backend of the numerics.")]
DeviceOpt = Annotated[str | None, _opt(metavar="DEVICE", help="cpu, cuda, cuda:1, ...")]
DtypeOpt = Annotated[Dtype, typer.Option(help="Floating-point type of the numerics.")]
ScalesOpt = Annotated[
    str | None,
    _opt(
        metavar="FLOAT,FLOAT,...",
        help="Start scales of the random runs, e.g. 0.5,4: used in turn, or spaced "
        "geometrically between the smallest and the largest when there are more runs "
        "[default: 0.5,1,2].",
    ),
]
CounterexampleOpt = Annotated[
    str | None,
    _opt("--save-counterexample", metavar="DIR", help="Folder for counterexample files."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress display.")]


# ---- option groups: each declared once, shared by every command that takes it -------------------
@dataclasses.dataclass(frozen=True)
class ProblemOptions:
    """The problem options of `check` and `predict`, as given: text (lambdas are read exactly),
    choices as enum members, None where not given (`build_problem` fills them in)."""

    counts: CountsOpt = None
    classes: ClassesOpt = None
    samples: SamplesOpt = None
    depth: DepthOpt = None
    width: WidthOpt = None
    widths: WidthsOpt = None
    lambda_w: LambdaWOpt = None
    lambda_h: LambdaHOpt = None
    lambda_b: LambdaBOpt = None
    bias: BiasOpt = None
    loss: LossOpt = None
    activation: ActivationOpt = None
    radius_w: RadiusWOpt = None
    radius_h: RadiusHOpt = None
    smoothing: SmoothingOpt = None
    focusing: FocusingOpt = None
    temperature: TemperatureOpt = None

    def given(self) -> dict[str, Any]:
        """Every option by name: the keyword arguments of `build_problem`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def any_given(self) -> bool:
        return any(v is not None for v in self.given().values())


@dataclasses.dataclass(frozen=True)
class SweepProblemOptions(ProblemOptions):
    """`sweep`'s problem options: those of `check`, seven of which may be ranges
    `start:stop:count[:log]`, and `--lambda-h` may be `tied`."""

    classes: ClassesRangeOpt = None
    samples: SamplesRangeOpt = None
    depth: DepthRangeOpt = None
    width: WidthRangeOpt = None
    lambda_w: LambdaWRangeOpt = None
    lambda_h: LambdaHRangeOpt = None
    lambda_b: LambdaBRangeOpt = None


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The run options of `check` and `sweep`: how the evidence is gathered, on which backend,
    where counterexamples are saved."""

    restarts: RestartsOpt = 8
    search_starts: SearchStartsOpt = 256
    seed: SeedOpt = 0
    scales: ScalesOpt = None
    probe: ProbeOpt = False
    no_certificate: NoCertificateOpt = False
    certificate_boxes: CertificateBoxesOpt = 0
    no_optimise: NoOptimiseOpt = False
    no_continuation: NoContinuationOpt = False
    no_claim_candidates: NoClaimCandidatesOpt = False
    parameterisation: ParameterisationOpt = ParameterisationName.auto
    force: ForceOpt = False
    backend: BackendOpt = BackendName.numpy
    device: DeviceOpt = None
    dtype: DtypeOpt = Dtype.float64
    save_counterexample: CounterexampleOpt = None
    quiet: QuietOpt = False

    def settings(self, escalate: int = 2) -> Settings:
        """The verification settings (`run_settings`: bad values are bad input)."""
        settings = run_settings(
            self.restarts,
            self.seed,
            self.probe,
            self.no_certificate,
            self.no_optimise,
            self.save_counterexample,
            escalate,
            self.scales,
            self.force,
            not self.no_continuation,
            self.parameterisation.value,
        )
        return dataclasses.replace(
            settings,
            claim_candidates=not self.no_claim_candidates,
            search_starts=search_starts(self.search_starts),
            certificate_boxes=certificate_boxes(self.certificate_boxes),
        )

    @property
    def spec(self) -> tuple[str, str | None, str]:
        """`(backend, device, dtype)`, as a sweep's tasks and `make_backend` take them."""
        return (self.backend, self.device, self.dtype)


@dataclasses.dataclass(frozen=True)
class GridOptions:
    """How `sweep` runs its grid and where its results go."""

    out: Annotated[
        str | None,
        _opt(
            "--out",
            metavar="FILE",
            help="Results file (JSON lines), each point appended as it ends.",
        ),
    ] = None
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue --out: skip every point already in it.")
    ] = False
    plot: Annotated[
        str | None, _opt("--plot", metavar="FILE", help="Phase diagram (.png, .svg or .pdf).")
    ] = None
    scheduler: Annotated[
        str | None,
        _opt(
            metavar="ADDRESS",
            help="Address of an existing Dask scheduler (default: a local cluster).",
        ),
    ] = None
    workers: Annotated[
        int | None, typer.Option(help="Worker processes of the local cluster (default: cores).")
    ] = None


@dataclasses.dataclass(frozen=True)
class TensorOptions:
    """Where `measure` finds each array of a trained head in its file."""

    features_key: Annotated[
        str, _opt("--features-key", metavar="NAME", help="Name of the features in FILE.")
    ] = "features"
    labels_key: Annotated[
        str, _opt("--labels-key", metavar="NAME", help="Name of the labels in FILE.")
    ] = "labels"
    layer_keys: Annotated[
        str | None,
        _opt(
            "--layer-keys",
            metavar="NAME[,...]",
            help="Names of the head's layers, first to last (default W1, W2, ...).",
        ),
    ] = None
    bias_key: Annotated[
        str, _opt("--bias-key", metavar="NAME", help="Name of the last layer's bias.")
    ] = "b"

    def tensor_names(self) -> Any:
        """The names as `ncverify.app.measure.TensorNames`."""
        from ncverify.app.measure import TensorNames

        layers = None
        if self.layer_keys is not None:
            layers = tuple(k.strip() for k in self.layer_keys.split(","))
        return TensorNames(self.features_key, self.labels_key, layers, self.bias_key)


def _is_group(annotation: object) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def with_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with each parameter whose type is an option group (`ProblemOptions`,
    `RunOptions`, ...) replaced by the group's fields, and the options packed back into one
    object of the group when the command runs.

    Why: typer makes a command's options from its signature, so without this every command
    repeated every shared option as a parameter.  A group's fields are declared once, with their
    types, flags and help (`--help` shows them in the fields' order, where the group's parameter
    stands), and the command gets one typed object.
    """
    signature = inspect.signature(command, eval_str=True)
    groups = {n: p.annotation for n, p in signature.parameters.items() if _is_group(p.annotation)}
    parameters: list[inspect.Parameter] = []
    for name, parameter in signature.parameters.items():
        if name not in groups:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        hints = get_type_hints(groups[name], include_extras=True)
        parameters += [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
            )
            for f in dataclasses.fields(groups[name])
        ]

    @functools.wraps(command)
    def run(**options: Any) -> None:
        for name, group in groups.items():
            fields = dataclasses.fields(group)
            options[name] = group(**{f.name: options.pop(f.name) for f in fields})
        command(**options)

    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


#: The problem options that `build_problem` reads as given (`activation` changes the default).
PROBLEM_OPTIONS = tuple(
    f.name for f in dataclasses.fields(ProblemOptions) if f.name != "activation"
)
#: A bug in ncverify (an exception, or a run below a rigorous bound): never a verdict's code.
INTERNAL_ERROR = 70  # EX_SOFTWARE of sysexits.h


def fail(message: str) -> None:
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)


def claims() -> dict[str, Claim]:
    """Every claim by id, built-in then installed (`ncverify.app.claims.registry`)."""
    from ncverify.app.claims import ClaimError, registry

    try:
        return registry()
    except ClaimError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


def get_claim(reference: str) -> Claim:
    """The claim a CLAIM argument names: an id, a claim file or `module:attribute`
    (`ncverify.app.claims.resolve`); anything else is bad input."""
    from ncverify.app.claims import ClaimError, resolve

    try:
        return resolve(reference)
    except ClaimError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


@app.command("list")
def list_claims(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the registered claims."""
    registry = claims()
    if as_json:
        print(json.dumps([c.describe() for c in registry.values()], indent=2))
        return
    out.print(render.claim_table(registry.values()))


@app.command()
def show(claim_id: Annotated[str, typer.Argument(metavar="CLAIM")]) -> None:
    """Show a claim: statement, source, status, hypotheses and its default instance."""
    claim = get_claim(claim_id)
    out.print(render.claim_page(claim))


@app.command()
def derive(
    claim_id: Annotated[str, typer.Argument(metavar="CLAIM")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    check: Annotated[
        bool, typer.Option("--check", help="Run each step's sympy identity and print the outcome.")
    ] = False,
) -> None:
    """Print the worked derivation of a claim, each step with how it is checked."""
    claim = get_claim(claim_id)
    results = None
    if check:
        results = [s.verify_identity() if s.check == "sympy" else None for s in claim.derivation()]
    print(render.derivation(claim, str(fmt), results))
    if results is not None and False in results:
        raise typer.Exit(1)


def build_problem(claim, activation: str | None = None, **given: str | None) -> Problem:  # noqa: ANN001
    """A Problem from the CLI's problem options (`counts`, `classes`, `samples`, `depth`, `width`,
    `widths`, `lambda_w`, `lambda_h`, `lambda_b`, `bias`, `loss`), each one left unset taken from
    the claim's default instance (its widths too while the depth is the default's; at another
    depth every width is the default's feature dimension).  `--classes` and `--samples` go
    together: one alone would silently take the other from the default.
    """
    # choices arrive as enum members: the problem keeps plain strings
    given = {k: None if v is None else str(v) for k, v in given.items()}
    default = claim.default_problem()
    if activation is not None:  # a choice (enum member): the problem keeps the plain string
        default = default.with_(activation=str(activation))
    if all(v is None for v in given.values()):
        return default
    g = dict.fromkeys(PROBLEM_OPTIONS) | given
    if (g["classes"] is None) != (g["samples"] is None) and g["counts"] is None:
        raise ProblemError("give --classes and --samples together (or --counts).")
    if g["counts"] is None and g["classes"] is None:
        g["counts"] = ",".join(str(c) for c in default.counts)
    if g["widths"] is None and g["width"] is None:
        same_depth = g["depth"] is None or str(g["depth"]).strip() == str(default.depth)
        if same_depth:
            g["widths"] = ",".join(str(w) for w in default.widths)
        else:
            g["width"] = str(default.widths[0])
    if g["lambda_b"] is None and g["bias"] in (None, "regularised") and default.lambda_b:
        g["lambda_b"] = str(default.lambda_b)  # the default's weight-decayed bias
    # the default's radii, smoothing, focusing and temperature, where the loss keeps them
    for name in ("radius_w", "radius_h", "smoothing", "focusing", "temperature"):
        kept = g["loss"] is None or g["loss"] == str(default.loss)
        if g[name] is None and kept and getattr(default, name) is not None:
            g[name] = str(getattr(default, name))
    return Problem.build(
        counts=g["counts"],
        classes=g["classes"],
        samples=g["samples"],
        depth=g["depth"] if g["depth"] is not None else default.depth,
        width=g["width"],
        widths=g["widths"],
        lambda_w=g["lambda_w"] if g["lambda_w"] is not None else _one_or_list(default.lambda_w),
        lambda_h=g["lambda_h"] if g["lambda_h"] is not None else str(default.lambda_h),
        lambda_b=g["lambda_b"],
        loss=g["loss"] if g["loss"] is not None else default.loss,
        bias=g["bias"] if g["bias"] is not None or g["lambda_b"] is not None else default.bias,
        activation=default.activation,
        radius_w=g["radius_w"],
        radius_h=g["radius_h"],
        smoothing=g["smoothing"],
        focusing=g["focusing"],
        temperature=g["temperature"],
    )


@app.command()
@with_options
def check(
    claim_id: Annotated[str | None, typer.Argument(metavar="CLAIM")] = None,
    all_claims: Annotated[
        bool, typer.Option("--all", help="Check every claim on its default.")
    ] = False,
    *,
    options: ProblemOptions,
    run: RunOptions,
    escalate: Annotated[
        int,
        typer.Option(help="Times to double the runs when none reached the prediction or beat it."),
    ] = 2,
    json_out: Annotated[
        str | None,
        _opt("--json", metavar="FILE|-", help="Write the JSON report to a file, or - for stdout."),
    ] = None,
) -> None:
    """Check one claim on one instance (or every claim on its default with --all)."""
    from ncverify.verify import verify

    settings = run.settings(escalate)
    if all_claims and claim_id is not None:
        fail("give either a claim or --all, not both.")
    if not all_claims and claim_id is None:
        fail("name a claim to check (see `ncverify list`) or give --all.")
    if all_claims and options.any_given():
        fail("--all checks every claim on its own default instance; give no problem options.")
    check_outputs(json_out=json_out, save_counterexample=run.save_counterexample)
    be = make_backend(*run.spec)
    if all_claims:
        _check_all(be, settings, json_out, run.quiet)
    claim = get_claim(claim_id)
    try:
        problem = build_problem(claim, **options.given())
    except ProblemError as exc:
        fail(str(exc))
    _check_runnable([problem], settings)
    with render.progress(err, enabled=not run.quiet and err.is_terminal) as bar:
        report = verify(claim, problem, be, settings, bar)
    if json_out == "-":
        print(report.dumps())
    else:
        out.print(render.report(report))
        _write_json(json_out, report.to_json())
    if report.contradiction is not None:
        err.print(f"error: {report.contradiction}.", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(INTERNAL_ERROR)
    raise typer.Exit(report.verdict.exit_code)


def _check_runnable(problems: list[Problem], settings: Settings) -> None:
    """A `--parameterisation` that an instance cannot use, or an instance whose arrays no check
    could hold (`ncverify.verify.affordable`): one sentence, exit 2, before any run."""
    from ncverify.limits import InputTooLarge
    from ncverify.model.reduction import unavailable
    from ncverify.verify import affordable

    for problem in problems:
        why = None
        if settings.parameterisation is not None:
            why = unavailable(problem, settings.parameterisation)
        if why is not None:
            fail(f"{why} ({problem.summary()}).")
        try:
            affordable(problem, settings)
        except InputTooLarge as exc:
            fail(str(exc))


def _check_all(be: Backend, settings: Settings, json_out: str | None, quiet: bool) -> None:
    """`check --all`: every claim on its default instance, a summary table, exit 0/3/70."""
    from ncverify.verify import verify

    registry = claims()
    _check_runnable([c.default_problem() for c in registry.values()], settings)
    reports = []
    for claim in registry.values():
        with render.progress(err, enabled=not quiet and err.is_terminal) as bar:
            reports.append(verify(claim, claim.default_problem(), be, settings, bar))
    if json_out != "-":
        out.print(render.summary_table(reports))
    _write_json(json_out, [r.to_json() for r in reports])
    if any(r.contradiction for r in reports):
        raise typer.Exit(INTERNAL_ERROR)
    raise typer.Exit(3 if any(r.verdict == Verdict.INCONCLUSIVE for r in reports) else 0)


def check_outputs(
    *,
    json_out: str | None = None,
    save_counterexample: str | None = None,
    out_file: str | None = None,
    plot_file: str | None = None,
) -> None:
    """Every output path is writable, before any computation (else one sentence, exit 2): a
    folder, socket or block device is refused here, not after minutes of work (the rule of
    what each kind of path gets is `ncverify.paths.check_file`'s)."""
    from ncverify.paths import OutputError, check_file, check_folder, check_plot_file

    try:
        if json_out is not None and json_out != "-":
            check_file(json_out, "JSON report")
        if out_file is not None:
            check_file(out_file, "results file")
        if plot_file is not None:
            check_plot_file(plot_file)
        if save_counterexample is not None:
            check_folder(save_counterexample, "counterexample folder")
    except OutputError as exc:
        fail(str(exc))


@app.command()
@with_options
def predict(
    claim_id: Annotated[str, typer.Argument(metavar="CLAIM")],
    *,
    options: ProblemOptions,
    json_out: Annotated[
        str | None,
        _opt("--json", metavar="FILE|-", help="Write the prediction as JSON to a file, or -."),
    ] = None,
) -> None:
    """The claim's closed form for one instance, no optimiser: the optimum to 30 digits,
    per-class gains, lengths and regimes, phase boundaries and the distance to the nearest.

    Exit codes: 0, 2 on bad input, 4 when the instance is outside the claim's hypotheses.
    """
    claim = get_claim(claim_id)
    check_outputs(json_out=json_out)
    try:
        problem = build_problem(claim, **options.given())
    except ProblemError as exc:
        fail(str(exc))
    unmet = claim.hypotheses(problem)
    pred = None if unmet else claim.closed_form(problem)
    if json_out is not None:
        from ncverify.report import PREDICTION_SCHEMA, prediction_json, version

        payload = {
            "schema": PREDICTION_SCHEMA,
            "ncverify": version(),
            "claim": claim.id,
            "problem": problem.describe(),
            "hypotheses": unmet,
            "prediction": None if pred is None else prediction_json(pred),
        }
        _write_json(json_out, payload)
    if json_out != "-":
        out.print(render.prediction_page(claim, problem, pred, unmet))
    raise typer.Exit(Verdict.NOT_APPLICABLE.exit_code if unmet else 0)


@app.command()
@with_options
def measure(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A trained head (.npz).")],
    claim_id: Annotated[str, _opt("--claim", metavar="CLAIM", help="The claim to compare with.")],
    lambda_w: Annotated[
        str,
        _opt("--lambda-w", metavar="DECIMAL[,...]", help="The head's weight decay (exact)."),
    ],
    lambda_h: Annotated[
        str | None,
        _opt("--lambda-h", metavar="DECIMAL", help="Feature weight decay (default: fitted)."),
    ] = None,
    lambda_b: LambdaBOpt = None,
    loss: LossOpt = None,
    *,
    names: TensorOptions,
    json_out: Annotated[
        str | None,
        _opt("--json", metavar="FILE|-", help="Write the measurement as JSON to a file, or -."),
    ] = None,
    plot_file: Annotated[
        str | None,
        _opt("--plot", metavar="FILE", help="Predicted and trained gains (.png, .svg or .pdf)."),
    ] = None,
) -> None:
    """A trained network's head beside the claim's predicted optimum: NC metrics per layer,
    gains and lengths per class, collapsed classes, at the effective lambda_H (docs/measure.md).

    Exit codes: 0 measured, 2 on bad input, 3 when no prediction could be made (a non-positive
    fitted lambda_H), 4 when the instance is outside the claim's hypotheses.
    """
    from ncverify.app import measure as ms

    claim = get_claim(claim_id)
    _penalised_only(
        claim,
        None if loss is None else loss.value,
        "a trained head is measured against a claim about a penalised loss (weight decay), "
        "and {problem} is not one.",
    )
    check_outputs(json_out=json_out, plot_file=plot_file)
    try:
        trained = ms.load(file, names.tensor_names())
        result = ms.measure(
            claim,
            trained,
            lambda_w=lambda_w,
            lambda_h=lambda_h,
            lambda_b=lambda_b,
            loss=None if loss is None else loss.value,
        )
    except ms.MeasureError as exc:
        fail(str(exc))
    _write_json(json_out, ms.to_json(result))
    if json_out != "-":
        out.print(ms.render(result))
    if plot_file is not None and result.classes is not None:
        _draw(lambda: ms.plot(result, plot_file), plot_file)
    if result.unmet:
        raise typer.Exit(Verdict.NOT_APPLICABLE.exit_code)
    raise typer.Exit(3 if result.prediction is None else 0)


@app.command()
@with_options
def sweep(
    claim_id: Annotated[str, typer.Argument(metavar="CLAIM")],
    *,
    options: SweepProblemOptions,
    run: RunOptions,
    grid: GridOptions,
) -> None:
    """Check a claim at every point of a grid (through Dask): results file, table, phase diagram.

    Exit codes: 0 when every point ran (refutations are findings), 3 when any point was
    inconclusive or failed, 2 on bad input, 130 when interrupted (finish with --resume).
    """
    from ncverify.app import sweep as sw

    claim = get_claim(claim_id)
    given = options.given()
    tied = given["lambda_h"] is not None and given["lambda_h"].strip().lower() == "tied"
    if tied or any(sw.is_range(given.get(name)) for name in ("lambda_w", "lambda_h", "lambda_b")):
        # a grid over the classes or the depth means something for every problem; one over
        # lambda does not where the lambdas do not weigh a loss
        _lambda_phase_only(claim, None if options.loss is None else str(options.loss))
    settings = run.settings()
    check_outputs(save_counterexample=run.save_counterexample)
    make_backend(*run.spec)
    if tied and given["lambda_w"] is None:
        given["lambda_w"] = _one_or_list(claim.default_problem().lambda_w)
    if tied:
        given["lambda_h"] = None
    extra = _run_flags(settings, run.spec)
    try:
        n_workers = _workers(grid.scheduler, grid.workers)
        axes, points = sw.expand(given, tied)
        if grid.plot is not None:
            sw.check_plot_path(grid.plot)
            sw.plot_axes(axes)
        tasks = _plan(claim, points, given, settings, run.spec, tied, extra)
        results = sw.ResultsFile(grid.out, grid.resume)
    except (sw.SweepError, ProblemError) as exc:
        fail(str(exc))
    _check_runnable([t.problem for t in tasks], settings)
    if results.dropped:
        err.print(
            f"note: dropped {results.dropped} incomplete or repeated line(s) of {grid.out}.",
            highlight=False,
            markup=False,
        )
    outcome = _run_points(tasks, results, grid.scheduler, n_workers, grid.out, run.quiet)
    records = [outcome.records[t.key] for t in tasks if t.key in outcome.records]
    title = sw.title(claim.id, tasks[0].problem, axes, tied)
    _print_sweep(tasks, records, outcome, axes, title, grid.out)
    if grid.plot is not None and records:
        plot = grid.plot
        _draw(lambda: sw.plot(records, axes, plot, title), plot)
        out.print(f"phase diagram in {plot}", highlight=False, markup=False)
    inconclusive = outcome.failures or any(r["verdict"] == Verdict.INCONCLUSIVE for r in records)
    raise typer.Exit(3 if inconclusive else 0)


def _penalised_only(claim: Claim, loss: str | None, sentence: str) -> None:
    """Exit 2 with `sentence` (naming the kind of problem and why) when the claim's or the given
    loss has no penalised objective."""
    from ncverify.kinds import kind_of

    for name in (claim.loss, loss):
        if name is not None and not ModelLoss(name).penalised:
            kind = kind_of(name)
            why = kind.no_lambda_phase or "its lambdas do not weigh a loss"
            fail(sentence.format(problem=kind.description, why=why))


def _lambda_phase_only(claim: Claim, loss: str | None) -> None:
    """Exit 2 with one sentence when the claim's or the given problem has no phase over lambda
    (its kind says why)."""
    from ncverify.kinds import kind_of

    for name in (claim.loss, loss):
        kind = None if name is None else kind_of(name)
        if kind is not None and kind.no_lambda_phase:
            fail(
                f"{kind.description} has no phase over lambda ({kind.no_lambda_phase}); sweep "
                "another parameter, or check instances with ncverify check."
            )


def _draw(draw: Callable[[], None], plot_file: str) -> None:
    """Draw a plot whose path was checked before the work: only a change since then fails."""
    from ncverify.paths import OutputError

    try:
        draw()
    except OutputError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the plot {plot_file!r}: {exc.strerror or exc}.")


def _run_flags(settings: Settings, spec: tuple) -> list[str]:
    """The run options of `check` that reproduce `settings` on the backend `spec`."""
    flags = {
        "--probe": settings.probe,
        "--no-certificate": not settings.certificate,
        "--no-optimise": not settings.optimise,
        "--no-continuation": not settings.continuation,
        "--no-claim-candidates": not settings.claim_candidates,
        "--force": settings.force,
    }
    extra = ["--restarts", str(settings.restarts), "--seed", str(settings.seed)]
    from ncverify.verify import Settings

    if settings.search_starts != Settings().search_starts:
        extra += ["--search-starts", str(settings.search_starts)]
    if settings.certificate_boxes:
        extra += ["--certificate-boxes", str(settings.certificate_boxes)]
    extra += [f for f, on in flags.items() if on]
    if settings.parameterisation is not None:
        extra += ["--parameterisation", settings.parameterisation]
    backend, device, dtype = spec
    if (backend, device, dtype) != ("numpy", None, "float64"):
        extra += ["--backend", str(backend), "--dtype", str(dtype)]
        extra += ["--device", device] if device else []
    return extra


def _workers(scheduler: str | None, workers: int | None) -> int | None:
    from ncverify.app.sweep import SweepError

    if scheduler is not None and workers is not None:
        raise SweepError("give either --scheduler or --workers, not both.")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be a positive integer, not {workers}.")
    return workers


def _plan(claim, points, options, settings, spec, tied: bool, extra: list[str]) -> list:  # noqa: ANN001, PLR0913
    """One task per grid point, each with the `check` command that reproduces it (the claim
    named so that a worker resolves it again: its id, its file's path or `module:attribute`)."""
    from ncverify.app import sweep as sw
    from ncverify.app.claims import reference

    name = reference(claim)
    tasks: list[sw.PointTask] = []
    for point in points:
        problem = build_problem(claim, **{k: point.options[k] for k in options})
        key = sw.point_key(claim.id, problem, settings, spec)
        if any(t.key == key for t in tasks):
            raise sw.SweepError("the grid repeats a point; check the ranges.")
        coords = {axis: c.to_json() for axis, c in point.coordinates.items()}
        command = sw.check_command(name, point.options, extra)
        tasks.append(
            sw.PointTask(key, point.index, name, problem, settings, spec, coords, tied, command)
        )
    return tasks


def _run_points(tasks, results, scheduler, n_workers, out_file, quiet: bool):  # noqa: ANN001, ANN202, PLR0913
    """Run the points not yet in `results` on a Dask cluster; 130 when interrupted."""
    from ncverify.app import sweep as sw

    try:
        with render.progress(err, enabled=not quiet and err.is_terminal) as bar:
            update = None if bar is None else (lambda done, total: bar("points", done, total))
            if all(t.key in results for t in tasks):  # nothing to run: no cluster
                return sw.execute(tasks, results, None, update)
            with sw.dask_client(scheduler, n_workers) as client:
                return sw.execute(tasks, results, client, update)
    except sw.SweepError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        done = sum(t.key in results for t in tasks)
        where = (
            f"are in {out_file}; finish with --resume" if out_file else "were not saved (no --out)"
        )
        err.print(
            f"interrupted: {done} of {len(tasks)} points {where}.", highlight=False, markup=False
        )
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _print_sweep(tasks, records, outcome, axes, title: str, out_file: str | None) -> None:  # noqa: ANN001, PLR0913
    from ncverify.app import sweep as sw

    # off a terminal (a file, a pipe) rich would assume 80 columns and truncate the cells
    wide = out if out.is_terminal else Console(file=out.file, width=220)
    wide.print(sw.summary_table(records, axes, title))
    out.print(
        f"{len(tasks)} points: {outcome.computed} computed, {outcome.reused} reused"
        + (f" from {out_file}" if outcome.reused else "")
        + (f", {outcome.resubmitted} resubmitted after lost workers" if outcome.resubmitted else "")
        + (f"; results in {out_file}" if out_file else ""),
        highlight=False,
        markup=False,
    )
    for t in tasks:
        if t.key in outcome.failures:
            err.print(
                f"point {t.index} ({t.command}) failed: {outcome.failures[t.key]}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def run_settings(  # noqa: PLR0913
    n_restarts: int,
    n_seed: int,
    probe: bool,
    no_certificate: bool,
    no_optimise: bool,
    save_counterexample: str | None,
    n_escalate: int = 2,
    scales: str | None = None,
    force: bool = False,
    continuation: bool = True,
    parameterisation: str = "auto",
) -> Settings:
    """The verification settings from the run options of `check` (and `sweep`)."""
    from ncverify.limits import MAX_RUNS, MAX_SEED
    from ncverify.verify import Settings

    if n_escalate < 0:
        fail(f"escalate must be a non-negative integer, not {n_escalate}.")
    if n_restarts < 0:
        fail(f"restarts must be a non-negative integer, not {n_restarts}.")
    if n_restarts > MAX_RUNS:  # every run keeps its end point and its row of the report
        fail(f"restarts must be at most {MAX_RUNS} (runs of one check), not {_count(n_restarts)}.")
    if not 0 <= n_seed <= MAX_SEED:
        fail(f"seed must be an integer from 0 to {MAX_SEED}, not {_count(n_seed)}.")
    extra = {} if scales is None else {"scales": start_scales(scales)}
    return Settings(
        restarts=max(n_restarts, 1),
        seed=n_seed,
        certificate=not no_certificate,
        optimise=not no_optimise and n_restarts > 0,
        probe=probe,
        save_dir=save_counterexample,
        escalate=n_escalate,
        force=force,
        continuation=continuation,
        parameterisation=None if parameterisation == "auto" else parameterisation,  # type: ignore[arg-type]
        **extra,
    )


def search_starts(n: int) -> int:
    """`--search-starts`: from 0 (off) to `MAX_RUNS`."""
    from ncverify.limits import MAX_RUNS

    if not 0 <= n <= MAX_RUNS:
        fail(f"search starts must be an integer from 0 to {MAX_RUNS}, not {_count(n)}.")
    return n


def certificate_boxes(n: int) -> int:
    """`--certificate-boxes`: from 0 (off) to `MAX_CERTIFICATE_BOXES`."""
    from ncverify.limits import MAX_CERTIFICATE_BOXES

    if not 0 <= n <= MAX_CERTIFICATE_BOXES:
        fail(
            f"certificate boxes must be an integer from 0 to {_count(MAX_CERTIFICATE_BOXES)}, "
            f"not {_count(n)}."
        )
    return n


def _count(value: int) -> str:
    """An integer as a sentence shows it: a user's 10^30 as `1e+30`, not thirty-one digits."""
    return f"{value:.3g}" if abs(value) > 10**15 else str(value)


def start_scales(text: str) -> tuple[float, ...]:
    """`--scales`: positive finite numbers separated by commas."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        fail(f"scales must be positive numbers separated by commas, not {text!r}.")
    if not all(math.isfinite(v) and v > 0 for v in values):
        fail(f"scales must be positive finite numbers, not {text!r}.")
    return values


def make_backend(backend: str, device: str | None, dtype: str) -> Backend:
    """The backend named by `--backend/--device/--dtype`; an absent one is bad input."""
    backend, dtype = str(backend), str(dtype)
    try:
        return Backend.create(backend, device, dtype)
    except BackendError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


def _one_or_list(values: tuple) -> str:
    return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)


def _write_json(path: str | None, payload: object) -> None:
    if path is None:
        return
    text = json.dumps(payload, indent=2, allow_nan=False)
    if path == "-":
        print(text)
        return
    from ncverify.paths import OutputError, write_text

    # checked before the run (check_outputs), so only a change since then fails here
    try:
        write_text(path, text + "\n", what="JSON report")
    except (OSError, OutputError) as exc:
        message = (
            str(exc)
            if isinstance(exc, OutputError)
            else f"cannot write the JSON report to {path!r}: {exc.strerror or exc}."
        )
        err.print(
            f"error: {message}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERNAL_ERROR) from None


@app.command()
def recheck(
    path: Annotated[str, typer.Argument(metavar="FILE", help="A saved counterexample (.npz).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    claim_ref: Annotated[
        str | None,
        _opt(
            "--claim",
            metavar="CLAIM",
            help="The claim the file was saved from, named again where it is not built-in (a "
            "claim file, module:attribute or an installed claim's id): recheck never imports "
            "code that a file names.",
        ),
    ] = None,
) -> None:
    """Re-evaluate a saved counterexample from scratch and print the verdict it supports."""
    from ncverify.app.recheck import RecheckError, recheck_file

    named = None if claim_ref is None else get_claim(claim_ref)
    try:
        result = recheck_file(path, named)
    except RecheckError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        out.print(render.recheck(result))
    raise typer.Exit(Verdict(result["verdict"]).exit_code)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt (`main` exits 143).

    Why: the default action of SIGTERM ends the process on the spot, where it stands: no
    `finally` block runs, so a temporary output file stays behind and the optimiser's pool is
    not stopped.  As a KeyboardInterrupt it unwinds through the same handlers as Ctrl-C, which
    already clean up (atomic writers, `ncverify.evidence.workers.pool`, a sweep's cluster).
    """

    received = False  # a SIGTERM came: the exit code of an interrupt is 143, not 130

    @classmethod
    @contextlib.contextmanager
    def raised(cls) -> Iterator[None]:
        """Inside the block, SIGTERM raises `_Terminated` (once: more while it unwinds would cut
        the cleanup short); the previous handler after it (`main` also runs in-process, in tests).
        Signal handlers can be set in the main thread only: elsewhere nothing changes."""

        def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
            if not cls.received:
                cls.received = True
                raise cls

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        cls.received = False
        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


def main() -> None:
    """Console-script entry point: usage errors also become one sentence and exit code 2; an
    interrupt exits 130 (Ctrl-C), or 143 (SIGTERM, see `_Terminated`), with nothing half-written.
    """
    try:  # typer >= 0.20 vendors click; older versions use click itself
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover
        from click import ClickException

    if len(sys.argv) <= 1:  # bare `ncverify`: the help, not a usage error
        sys.argv.append("--help")
    with _Terminated.raised():
        try:
            rc = app(standalone_mode=False)
        except ClickException as exc:
            err.print(
                f"error: {exc.format_message()}", highlight=False, markup=False, soft_wrap=True
            )
            rc = 2
        except typer.Exit as exc:  # typer turns KeyboardInterrupt (`_Terminated` too) into 130
            rc = exc.exit_code
        except typer.Abort:
            rc = 130
        except KeyboardInterrupt:
            err.print("interrupted.", highlight=False, markup=False)
            rc = 130
        except Exception as exc:  # noqa: BLE001 - a traceback is never the interface
            err.print(
                f"error: internal error ({type(exc).__name__}: {exc}); this is a bug in "
                "ncverify, please report it with the command line.",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            rc = INTERNAL_ERROR
    code = rc if isinstance(rc, int) else 0
    sys.exit(143 if code == 130 and _Terminated.received else code)


if __name__ == "__main__":  # pragma: no cover
    main()
