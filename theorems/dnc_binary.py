r"""Two classes, MSE, a ReLU deep head: deep neural collapse is globally optimal.
With $K = 2$ balanced classes of $n$ samples, free features $H_1$, $L \ge 2$ layers with a ReLU
between consecutive layers ($H_{l+1} = \mathrm{relu}(W_l H_l)$, logits $W_L H_L$), no bias, the
MSE loss and weight decay on every factor, the optimal value is that of *deep neural collapse*:
the features of each class collapse to their class mean and the class means form an orthogonal
frame at every layer, so that
$F^* = \min_{\gamma \ge 0} \tfrac12 (\gamma - 1)^2 + \tfrac{L+1}{2} (n P K^{L+1})^{1/(L+1)} \gamma^q$,
the orthogonal-frame value of the linear deep model with $M = L$ layers.  Here $P$ is the
product of all $L + 1$ weight decays ($\lambda_{H_1}$ and every $\lambda_{W_l}$), $q = 2/(L+1)$
and $\gamma$ is the class gain; the minimiser is $\gamma = 0$ (every class collapses to zero)
beyond the threshold $nPK^{L+1} \ge \mathrm{thr}_L = (L-1)^{L-1}/L^{2L}$, else the largest root
of $\gamma^{L-1}(1-\gamma)^{L+1} = nPK^{L+1}$.

What is checked: that the DNC point has this value and is first-order stationary in the sense of
one-sided directional derivatives (its pre-activations have exact zeros, where the objective has
a kink), and that no random-start run ends below it.  With no certificate for a ReLU head, the
verdict is at most *consistent*.  The value is all that is claimed: with free $H_1$ the layer-1
geometry is not unique (docs/theory/dnc.md#the-dnc-value).

Source: Súkeník, Mondelli, Lampert, "Deep Neural Collapse Is Provably Optimal for the Deep
Unconstrained Features Model", NeurIPS 2023, arXiv 2305.13165 (its main theorem, for two
classes); the model as this project encodes it and the proof that no DNC configuration does
better: docs/theory/dnc.md.
"""

from __future__ import annotations

from ncverify.claim import TruthRegion
from theorems._dnc import SUKENIK_2023, DeepNeuralCollapse


class DNCBinary(DeepNeuralCollapse):
    id = "dnc-binary"
    title = "Two classes, ReLU deep head: deep neural collapse is optimal"
    source = f"{SUKENIK_2023}: the main theorem (K = 2)"
    status = "proven for K = 2"
    default_classes = 2
    classes = (2, 2)
    classes_rule = "there must be exactly two classes (K = 2; see dnc-multiclass)"
    truth_region = TruthRegion(
        basis="proven",
        reference="Súkeník, Mondelli, Lampert 2023, main theorem, K = 2 "
        "(docs/theory/dnc.md#status)",
        activation="relu",
        classes=(2, 2),
        depth=(2, 4),
        widths=(2, 8),
        wide=True,
    )


claim = DNCBinary()
