"""Train a network on scikit-learn's digits (or MNIST-1D) the way the model is posed, and save
its head for `ncverify measure` (docs/measure.md).

A multilayer perceptron backbone (inputs -> 128 -> 128 -> d, ReLU between, the last map linear so
that the features are unconstrained in sign, as in the model) and a deep linear head of `M`
bias-free layers (d -> d -> ... -> 10), trained with full-batch gradient descent with momentum
on the model's objective: the squared loss averaged over the samples, `||Z - Y||^2 / (2N)`, plus
plain L2 weight decay written into the loss (`lambda_W / 2 ||W_m||^2` on every head layer, the
backbone's own decay on its parameters; decoupled decay as in AdamW would not be this
objective). The data can be subsampled per class (`--counts`) for an imbalanced run;
`--dataset mnist1d` uses MNIST-1D, generated procedurally (the `mnist1d` package; nothing is
downloaded).

It writes, into `--out`:
- `head.npz`: the training features (one row per sample), the labels and `W1..WM`, the format
  `ncverify measure` reads;
- `metrics.json`: per recorded epoch the objective and the NC1 of every head layer
  (`ncverify.evidence.metrics`), for a plot of the collapse over training.

    .venv/bin/python examples/train_digits.py --depth 2 --out runs/balanced
    .venv/bin/ncverify measure runs/balanced/head.npz --claim mse-imbalanced-biasfree \\
        --lambda-w 1e-3

Runs on the CPU with one thread (on a few shared cores torch's thread pool only contends).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from ncverify.evidence.metrics import layer_geometry
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem


def raw_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of a dataset available offline: scikit-learn's digits (1,797 images of
    8 x 8 pixels, shipped with scikit-learn) or MNIST-1D's training split (4,000 signals of
    length 40, generated procedurally by `mnist1d.data.make_dataset`, never downloaded)."""
    if name == "digits":
        digits = load_digits()
        return digits.data, digits.target
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise SystemExit(
            "--dataset mnist1d needs the mnist1d package (pip install mnist1d)."
        ) from None
    data = make_dataset(get_dataset_args())
    return np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"])


def dataset(
    counts: Sequence[int] | None, seed: int, name: str = "digits"
) -> tuple[np.ndarray, np.ndarray]:
    """The data, standardised, ordered class by class; `counts[k]` samples of class `k` kept
    (drawn without replacement), all of them without `counts`."""
    raw, y = raw_data(name)
    x = (raw - raw.mean(axis=0)) / (raw.std(axis=0) + 1e-8)
    rng = np.random.default_rng(seed)
    keep = []
    for k in range(10):
        members = np.flatnonzero(y == k)
        if counts is not None:
            if counts[k] > members.size:
                raise SystemExit(f"class {k} has only {members.size} samples, not {counts[k]}.")
            members = np.sort(rng.choice(members, size=counts[k], replace=False))
        keep.extend(members.tolist())
    keep_a = np.asarray(keep)
    return x[keep_a], y[keep_a]


class Network(torch.nn.Module):
    def __init__(self, inputs: int, width: int, depth: int) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Linear(inputs, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, width),
        )
        dims = [width] * depth + [10]
        self.head = torch.nn.ModuleList(
            torch.nn.Linear(dims[m], dims[m + 1], bias=False) for m in range(depth)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        z = h
        for layer in self.head:
            z = layer(z)
        return h, z


def objective(
    net: Network, x: torch.Tensor, y: torch.Tensor, lambda_w: float, backbone_decay: float
) -> torch.Tensor:
    """The model's objective in the head, plus the backbone's own L2 decay."""
    _, z = net(x)
    n = x.shape[0]
    loss = ((z - y) ** 2).sum() / (2 * n)
    head = sum((w.weight**2).sum() for w in net.head)
    backbone = sum((p**2).sum() for p in net.backbone.parameters())
    return loss + lambda_w / 2 * head + backbone_decay / 2 * backbone


def head_point(net: Network, x: torch.Tensor) -> Params:
    with torch.no_grad():
        h, _ = net(x)
        return Params(
            tuple(w.weight.double().numpy().copy() for w in net.head), h.double().numpy().T.copy()
        )


def nc1_per_layer(problem: Problem, point: Params) -> list[float | None]:
    return [g.nc1 for g in layer_geometry(Objective(problem, np), point)]


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    counts = None if args.counts is None else [int(c) for c in args.counts.split(",")]
    x_np, y_np = dataset(counts, args.seed, args.dataset)
    problem = Problem.build(
        counts=np.bincount(y_np, minlength=10).tolist(),
        depth=args.depth,
        width=args.width,
        lambda_w=args.lambda_w,
        lambda_h=args.lambda_w,  # only to build the problem for the metrics; NC1 ignores it
    )
    x = torch.tensor(x_np, dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.tensor(y_np), 10).to(torch.float32)
    net = Network(x_np.shape[1], args.width, args.depth)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    history = []
    start = time.perf_counter()
    for epoch in range(args.epochs + 1):
        if epoch % args.every == 0 or epoch == args.epochs:
            with torch.no_grad():
                value = float(objective(net, x, y, args.lambda_w, args.backbone_decay))
            nc1 = nc1_per_layer(problem, head_point(net, x))
            history.append({"epoch": epoch, "objective": value, "nc1": nc1})
            print(f"epoch {epoch:6d}  objective {value:.6g}  NC1 {nc1}", flush=True)
        if epoch == args.epochs:
            break
        opt.zero_grad()
        objective(net, x, y, args.lambda_w, args.backbone_decay).backward()
        opt.step()
    point = head_point(net, x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"features": point.H.T, "labels": y_np}
    arrays |= {f"W{m}": w for m, w in enumerate(point.Ws, start=1)}
    np.savez(out / "head.npz", **arrays)
    summary = {
        "counts": problem.counts,
        "depth": args.depth,
        "width": args.width,
        "lambda_w": args.lambda_w,
        "backbone_decay": args.backbone_decay,
        "epochs": args.epochs,
        "seconds": time.perf_counter() - start,
        "history": history,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'head.npz'} and {out / 'metrics.json'}")
    return summary


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=1, help="linear layers of the head (M)")
    parser.add_argument("--width", type=int, default=32, help="feature dimension d")
    parser.add_argument(
        "--dataset", choices=("digits", "mnist1d"), default="digits", help="the data (offline)"
    )
    parser.add_argument("--counts", help="samples kept per class, e.g. 150,150,...,15")
    parser.add_argument("--lambda-w", type=float, default=1e-3, help="the head's weight decay")
    parser.add_argument("--backbone-decay", type=float, default=1e-4, help="the backbone's")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate")
    parser.add_argument("--epochs", type=int, default=4000, help="full-batch steps")
    parser.add_argument("--every", type=int, default=100, help="record metrics every k epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for head.npz and metrics.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    train(arguments())
