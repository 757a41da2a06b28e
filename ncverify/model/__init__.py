"""The mathematics of the objective: problem, parameters and objective with gradient and
Hessian-vector products on any array namespace, balanced factorisations, the exact scalar
problem of a mode, and exact/interval evaluation of a point.  No I/O, no CLI, no plotting."""
