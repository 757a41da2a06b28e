r"""Any number of classes, MSE, a ReLU deep head: deep neural collapse is globally optimal.
With $K \ge 3$ balanced classes of $n$ samples, free features $H_1$, $L \ge 2$ layers with a ReLU
between consecutive layers ($H_{l+1} = \mathrm{relu}(W_l H_l)$, logits $W_L H_L$), no bias, the
MSE loss and weight decay on every factor, the optimal value is that of *deep neural collapse*
(every class collapsed to its mean, the class means an orthogonal frame at every layer):
$F^* = \min_{\gamma \ge 0} \tfrac12 (\gamma - 1)^2 + \tfrac{L+1}{2} (n P K^{L+1})^{1/(L+1)} \gamma^q$,
with $P$ the product of all $L + 1$ weight decays, $q = 2/(L+1)$ and the class gain $\gamma$
given by the threshold rule of the linear deep model with $M = L$ layers.

This is the statement that the two-class theorem invites and that Súkeník, Lampert and Mondelli
(2024) argue against: beyond two classes and two layers, low-rank solutions beat DNC.  The
claim's search tries the k-subset witnesses (classes = the $k$-subsets of $[r]$,
$K = \binom{r}{k}$; $k = 2$ is the triangular graph), each of which beats DNC wherever DNC is
not zero iff its constant, a number $a + b\sqrt m$, is below $K^{L+1}$, decided exactly: never at
$L = 2$, at $L = 3$ first for $K = 70$, at $L \ge 4$ already for $K = 6$.  Elsewhere only the
claim-agnostic search can refute it, and a check that finds nothing better says so and no more.

Source: Súkeník, Lampert, Mondelli, "Neural Collapse versus Low-rank Bias: Is Deep Neural
Collapse Really Optimal?", NeurIPS 2024, arXiv 2405.14468 (its strongly-regular-graph
construction; the triangular graph is the line graph of the complete graph); the k-subset
family, its constants and where it wins are this project's own derivation, tested here:
docs/theory/dnc.md#witness.
"""

from __future__ import annotations

from ncverify.claim import TruthRegion
from theorems._dnc import SUKENIK_2024, DeepNeuralCollapse


class DNCMulticlass(DeepNeuralCollapse):
    id = "dnc-multiclass"
    title = "Three or more classes, ReLU deep head: deep neural collapse is optimal"
    source = f"{SUKENIK_2024}: the statement it argues against"
    status = (
        "refuted at some instances with L >= 3 (docs/theory/dnc.md#status); not refuted at L = 2"
    )
    default_classes = 6
    classes = (3, None)
    classes_rule = "there must be at least three classes (K >= 3; see dnc-binary)"
    truth_region = TruthRegion.empty(
        "no theorem and no certificate for a ReLU head: refuted at L >= 4 and at L = 3 (the "
        "k-subset witnesses, the search), only not refuted at L = 2",
        reference="docs/theory/dnc.md#status",
    )


claim = DNCMulticlass()
