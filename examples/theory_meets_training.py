"""Regenerate docs/training.md: trained networks beside the predicted optimum.

Three experiments on scikit-learn's digits with `train_digits.py` (next to this file), each head
measured by `ncverify measure` against `mse-imbalanced-biasfree` (docs/measure.md):

1. balanced, one head layer: NC1 over the epochs, and the trained gains against the predicted
   ones at the fitted lambda_H;
2. imbalanced (five classes of 150 samples, five of 10), two head layers, with a strong and a
   weak backbone decay: predicted and trained gains class by class, which classes collapse, and
   the shrinkage of the surviving ones;
3. calibrate on one run and predict another: the lambda_H fitted on a one-layer head of the
   imbalanced data (strong decay) predicts the gains of the two-layer head of experiment 2.

    .venv/bin/python examples/theory_meets_training.py      # a few minutes on 2 cores

It needs the `train` extra (torch, scikit-learn) and matplotlib; it writes docs/training.md and
its figures in docs/training/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import train_digits  # noqa: E402

import theorems  # noqa: E402
from ncverify.app import measure as ms  # noqa: E402

CLAIM = theorems.get("mse-imbalanced-biasfree")
IMBALANCED = ",".join(["150"] * 5 + ["10"] * 5)


def run(folder: Path, name: str, **options: object) -> tuple[dict, Path]:
    argv = ["--out", str(folder / name)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    summary = train_digits.train(train_digits.arguments(argv))
    return summary, folder / name / "head.npz"


def measured(head: Path, lambda_w: float, lambda_h: str | None = None) -> ms.Measurement:
    return ms.measure(CLAIM, ms.load(str(head)), lambda_w=repr(lambda_w), lambda_h=lambda_h)


def gains_table(data: dict) -> str:
    """Per class the predicted regime and gain beside the trained gain (or why none)."""
    if data["classes"] is None:
        return f"No prediction: {data['reason']}."
    rows = [
        "| class | count | predicted regime | predicted gain | trained gain |",
        "|---|---|---|---|---|",
    ]
    for c in data["classes"]:
        rows.append(
            f"| {c['class']} | {c['count']} | {c['predicted_regime']} | "
            f"{c['predicted_gain']:.4f} | {c['trained_gain']:.4f} |"
        )
    return "\n".join(rows)


def fit_line(data: dict) -> str:
    fit = data["lambda_h"]
    return (
        f"fitted lambda_H = {fit['fitted']:.4g} (relative residual {fit['residual']:.2f}; "
        f"balance estimate {fit['balance_estimate']:.4g})"
    )


def nc1_figure(summary: dict, path: Path) -> None:
    epochs = [h["epoch"] for h in summary["history"]]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for layer in range(summary["depth"]):
        ax.semilogy(
            epochs, [h["nc1"][layer] for h in summary["history"]], label=f"layer {layer + 1}"
        )
    ax.set_xlabel("epoch (full-batch step)")
    ax.set_ylabel("NC1")
    ax.set_title("balanced digits, one head layer: within-class variability")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collapsed_line(data: dict) -> str:
    collapsed = data["collapsed"] or {"predicted": "-", "trained": "-"}
    return (
        f"Collapsed classes: predicted {collapsed['predicted'] or 'none'}, trained "
        f"{collapsed['trained'] or 'none'} (a trained class counts as collapsed below gain 0.01)"
    )


def shrinkage_line(data: dict) -> str:
    """The shrinkage `1 - gamma` of the classes predicted alive, trained over predicted, and how
    it compares (worded from the numbers, so that a regenerated page says what its run gave)."""
    alive = [c for c in data["classes"] or [] if c["predicted_regime"] == "alive"]
    if not alive:
        return "No class is predicted alive."
    ratios = [(1 - c["trained_gain"]) / (1 - c["predicted_gain"]) for c in alive]
    within = sum(abs(r - 1) <= 0.25 for r in ratios)
    mean = sum(ratios) / len(ratios)
    return (
        f"Shrinkage `1 - gain` of the classes predicted alive, trained over predicted: "
        f"{', '.join(f'{r:.2f}' for r in ratios)} (mean {mean:.2f}; 1 is exact agreement): "
        f"{within} of {len(ratios)} within 25%."
    )


def agreement(data: dict) -> str:
    collapsed = data["collapsed"]
    if collapsed is None:
        return "No prediction was made."
    same = collapsed["predicted"] == collapsed["trained"]
    return (
        "The fitted lambda_H names exactly the classes that the trained network collapses"
        if same
        else "The classes predicted to collapse are not those the trained network collapses"
    ) + (
        f"; the fitted lambda_H lies {data['distance_to_boundary']:.2f} (in log lambda) from the "
        "nearest phase boundary, so a change of it by that much would change the prediction."
    )


def page(results: dict, seconds: float) -> str:
    bal, weak, strong, cal = (results[k] for k in ("balanced", "weak", "strong", "calibrated"))
    nc1 = bal["summary"]["history"]
    return f"""# Theory meets training

Networks trained on scikit-learn's digits the way the model is posed
(`examples/train_digits.py`: an MLP backbone, a deep linear bias-free head, full-batch gradient
descent on the averaged squared loss with plain L2 weight decay), each head measured by
[`ncverify measure`](measure.md) against `mse-imbalanced-biasfree` at the effective
$\\lambda_H$ fitted from the trained point. Regenerated by
`examples/theory_meets_training.py` ({seconds:.0f} s on this machine); the numbers are those of
that run.

## Balanced classes, one head layer

{bal["summary"]["epochs"]} epochs, head decay $\\lambda_W$ = {bal["lambda_w"]:g}. NC1 falls from
{nc1[0]["nc1"][0]:.3g} to {nc1[-1]["nc1"][0]:.3g} over training.

![NC1 over the epochs](training/nc1.png)

{fit_line(bal["measured"])}.

{gains_table(bal["measured"])}

With balanced classes the gains at the fitted $\\lambda_H$ would agree with the prediction for
any scale of the features once the head has converged (Euler's identity): the agreement above
measures convergence, not the theory.

## Imbalanced classes, two head layers

Five classes of 150 samples and five of 10, {strong["summary"]["epochs"]} epochs, head decay
$\\lambda_W$ = {strong["lambda_w"]:g}, backbone decay {strong["summary"]["backbone_decay"]:g}.
{fit_line(strong["measured"])}.

![predicted and trained gains](training/gains.png)

{gains_table(strong["measured"])}

{collapsed_line(strong["measured"])}. {agreement(strong["measured"])}
{shrinkage_line(strong["measured"])}

With a weaker backbone decay ({weak["summary"]["backbone_decay"]:g}, head decay
{weak["lambda_w"]:g}) the same data gives: {fit_line(weak["measured"])}.
{collapsed_line(weak["measured"])}. The network still collapses the minority classes, while the
model's optimum at the fitted $\\lambda_H$ keeps them alive.

## Calibrate on one run, predict another

A one-layer head trained on the same imbalanced data with the same decays as the two-layer
head above: {fit_line(cal["fit_run"])}. That $\\lambda_H$ ({cal["lambda_h"]}) then predicts
the gains of the two-layer head (`ncverify measure ... --lambda-h {cal["lambda_h"]}`):

{gains_table(cal["measured"])}

{collapsed_line(cal["measured"])}. {shrinkage_line(cal["measured"])}

## What this shows, and what it does not

The residual of the fit says how far a head is from a stationary point of the model for one
scalar $\\lambda_H$: near 0 the model describes the trained head at that $\\lambda_H$, near 1
no single $\\lambda_H$ does. A backbone has its own weight decay and its own architecture, and
training stops at a finite time, so a trained head is not a minimiser of the model, and where
the residual is large the comparison with the predicted optimum is a comparison with a model
that describes the head only in part: the numbers above say how far it got in this run. None
of it is a verdict on a theorem, which `ncverify check` verifies on the model itself.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4000)
    parser.add_argument("--output", default=str(ROOT / "docs" / "training.md"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.output)
    figures = out.parent / "training"
    figures.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        summary, head = run(folder, "balanced", depth=1, epochs=args.epochs, every=100)
        results["balanced"] = {
            "summary": summary,
            "lambda_w": 1e-3,
            "measured": ms.to_json(measured(head, 1e-3)),
        }
        nc1_figure(summary, figures / "nc1.png")
        for name, decay, lambda_w in (("weak", 1e-3, 1e-2), ("strong", 1e-2, 5e-2)):
            options = {"counts": IMBALANCED, "lambda_w": lambda_w, "backbone_decay": decay}
            summary, head2 = run(folder, name, depth=2, epochs=args.epochs, every=500, **options)
            imbalanced = measured(head2, lambda_w)
            results[name] = {
                "summary": summary,
                "lambda_w": lambda_w,
                "measured": ms.to_json(imbalanced),
            }
        ms.plot(measured(head2, lambda_w), str(figures / "gains.png"))  # the strong decay
        _, head1 = run(folder, "calibration", depth=1, epochs=args.epochs, every=500, **options)
        fit_run = ms.to_json(measured(head1, lambda_w))
        lambda_h = f"{fit_run['lambda_h']['fitted']:.6g}"
        results["calibrated"] = {
            "fit_run": fit_run,
            "lambda_h": lambda_h,
            "measured": ms.to_json(measured(head2, lambda_w, lambda_h)),
        }
    out.write_text(page(results, time.perf_counter() - start))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
