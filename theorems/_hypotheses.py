"""The hypotheses that claims share, in the words every claim uses for them: which loss, which
bias, balanced classes, enough room in the bottleneck.  A claim lists its own in `hypotheses`
with `model_hypotheses(problem, ...)` plus whatever is particular to it."""

from __future__ import annotations

from ncverify.model.problem import Problem

LOSS = {
    "mse": "the loss must be MSE",
    "ce": "the loss must be cross-entropy",
    "ls": "the loss must be label smoothing (--loss ls --smoothing alpha)",
    "focal": "the loss must be focal loss (--loss focal --focusing gamma)",
    "max-margin": "the problem must be the max-margin one (--loss max-margin)",
}
BIAS = {
    "none": "the model must have no bias",
    "free": "the last layer must have an unregularised bias",
    "regularised": "the last layer must have a weight-decayed bias (give lambda_b)",
}
BALANCED = "the classes must be balanced (all n_k equal)"
LINEAR = "the layers must be linear (no activation between them)"
RELU = "there must be a ReLU between the layers (--activation relu)"


def model_hypotheses(
    problem: Problem,
    *,
    loss: str,
    bias: str | None = None,
    balanced: bool = False,
    bottleneck: int = 0,
    activation: str = "linear",
) -> list[str]:
    """The unmet ones among: the loss is `loss`; the bias mode is `bias` (any if None); the
    classes are balanced (if `balanced`); the bottleneck `R` is at least `K - bottleneck`
    (if `bottleneck` > 0, e.g. 1 for a simplex ETF, which needs `R >= K - 1`); the activation
    between the layers is `activation` (linear by default; moot at depth 1)."""
    unmet = []
    if problem.activation != activation and problem.depth > 1:  # one layer has no activation
        unmet.append(LINEAR if activation == "linear" else RELU)
    if problem.loss != loss:
        unmet.append(LOSS[loss])
    if bias is not None and problem.bias != bias:
        unmet.append(BIAS[bias])
    if balanced and not problem.balanced:
        unmet.append(BALANCED)
    if bottleneck and problem.bottleneck < problem.K - bottleneck:
        unmet.append(
            f"the bottleneck R = {problem.bottleneck} must be at least K - {bottleneck} "
            f"= {problem.K - bottleneck}"
        )
    return unmet
