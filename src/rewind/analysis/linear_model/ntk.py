"""The neural tangent kernel at initialisation and its affine approximation (Hu et al. 2020).

Hu, Xiao, Adlam and Pennington show that for a two-layer network
f(x) = v . phi(W x / sqrt(d)) / sqrt(m) on centred inputs with ||x||^2 about d, the NTK
at initialisation is close, in spectral norm, to an affine transform of the data kernel
G = X X^T / d:

    first layer trained   Theta ~ zeta^2 G + (nu^2 / d) 1 1^T
    second layer trained  Theta ~ zeta^2 G + (nu^2 / 2d + gamma^2) 1 1^T
    both                  the sum

with zeta = E[phi'(g)], gamma = E[phi(g)], nu = E[phi''(g)] sqrt(tr(Sigma^2) / d),
g ~ N(0, 1), Sigma the input covariance. (Constants as the issue derived them from the
paper's abstract and checked numerically; the second-order term follows from expanding
E[phi'(u) phi'(u')] in the input correlation x.x'/d; our tests check them against the
measured kernel.) The diagonal differs by about (E[phi'^2] - zeta^2) (first layer), a
multiple of the identity that no linear model of the inputs can carry; we fit and report it
as c but leave it out of the linear model.

Any kernel alpha G + b 1 1^T is the kernel of the features psi(x) = [sqrt(alpha) x / sqrt(d);
sqrt(b)], so the linear model is f_lin(x) = beta . psi(x) with beta = 0 at the start.
For other architectures the constants are measured: the empirical NTK on a sample of inputs
(``empirical_ntk``, torch.func jacobians, batched) and a least-squares fit of alpha, b, c
(``fit_affine``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Largest Jacobian the empirical NTK holds in memory (examples x outputs x parameters).
MAX_JACOBIAN_BYTES = 4 * 2 ** 30


@dataclass(frozen=True)
class Activation:
    zeta: float      # E[phi'(g)]
    curvature: float  # E[phi''(g)] (nu = curvature * sqrt(tr(Sigma^2) / d))
    gamma: float     # E[phi(g)]
    slope_sq: float  # E[phi'(g)^2]
    square: float    # E[phi(g)^2]


def _gauss(fn) -> float:
    """E[fn(g)], g ~ N(0, 1), by 200-point Gauss-Hermite quadrature (probabilists')."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    return float(np.sum(weights * fn(nodes)) / math.sqrt(2 * math.pi))


def activation_constants(name: str) -> Activation:
    """zeta, E[phi''], gamma (and the second moments the diagonal needs) of an activation:
    exact for relu and linear, 200-point Gauss-Hermite quadrature for the smooth ones."""
    if name == "relu":   # phi' = step, phi'' = delta: E[delta(g)] = density at 0
        p0 = 1 / math.sqrt(2 * math.pi)
        return Activation(0.5, p0, p0, 0.5, 0.5)
    if name == "linear":
        return Activation(1.0, 0.0, 0.0, 1.0, 1.0)
    if name == "tanh":
        sech2 = lambda z: 1 / np.cosh(z) ** 2
        return Activation(_gauss(sech2), _gauss(lambda z: -2 * np.tanh(z) * sech2(z)), 0.0,
                          _gauss(lambda z: sech2(z) ** 2), _gauss(lambda z: np.tanh(z) ** 2))
    if name == "softplus":
        sig = lambda z: 1 / (1 + np.exp(-z))
        soft = lambda z: np.logaddexp(0, z)
        return Activation(_gauss(sig), _gauss(lambda z: sig(z) * (1 - sig(z))), _gauss(soft),
                          _gauss(lambda z: sig(z) ** 2), _gauss(lambda z: soft(z) ** 2))
    raise ValueError(f"model.activation: no closed form for {name!r}; known: relu, tanh, softplus, linear")


def closed_form(activation: str, train: str, x: torch.Tensor) -> tuple[float, float]:
    """(alpha, b) of the two-layer network's affine kernel for inputs ``x`` (n, d), from the
    activation's constants and the inputs' covariance."""
    a = activation_constants(activation)
    d = x.flatten(1).shape[1]
    nu2 = a.curvature ** 2 * trace_sigma_sq(x) / d
    first = (a.zeta ** 2, nu2 / d)
    second = (a.zeta ** 2, nu2 / (2 * d) + a.gamma ** 2)
    if train == "first":
        return first
    if train == "second":
        return second
    return first[0] + second[0], first[1] + second[1]


def trace_sigma_sq(x: torch.Tensor) -> float:
    """tr(Sigma^2) of the inputs' second-moment matrix, corrected for the sample's bias:
    for n Gaussian examples E tr(S^2) = (1 + 1/n) tr(Sigma^2) + tr(Sigma)^2 / n."""
    flat = x.flatten(1).double()
    n = len(flat)
    s = flat.T @ flat / n
    return float(((s * s).sum() - s.trace() ** 2 / n) / (1 + 1 / n))


def layer_parameters(model: nn.Module, train: str) -> list[str]:
    """Names of the parameters trained: ``first`` the first layer with parameters, ``second``
    the last (the output layer), ``both`` every parameter."""
    layers = [name for name, mod in model.named_modules()
              if not list(mod.children()) and any(True for _ in mod.parameters(recurse=False))]
    if train == "both":
        return [n for n, _ in model.named_parameters()]
    if train not in ("first", "second"):
        raise ValueError(f"--train: {train!r} is not allowed; choose first, second or both")
    layer = layers[0] if train == "first" else layers[-1]
    return [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[0] == layer]


def jacobian_bytes(model: nn.Module, names: list[str], n: int, outputs: int) -> int:
    params = dict(model.named_parameters())
    per = sum(params[k].numel() for k in names) * outputs * params[names[0]].element_size()
    return n * per


def jacobian(model: nn.Module, x: torch.Tensor, names: list[str], chunk: int = 128) -> torch.Tensor:
    """d f(x_i) / d theta for the parameters ``names``: (n, outputs, P), vmapped jacrev in chunks.
    The model is evaluated in eval mode (BatchNorm on running statistics)."""
    from torch.func import functional_call, grad, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    trained = {k: params[k] for k in names}
    fixed = {k: v for k, v in params.items() if k not in trained}
    buffers = dict(model.named_buffers())

    def f(p, xi):
        return functional_call(model, ({**fixed, **p}, buffers), (xi.unsqueeze(0),)).squeeze(0)

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(x[:1]).shape[1]
        # one output: per-example gradients (vmap of grad, about 2x faster than jacrev here)
        fn = vmap(grad(lambda p, xi: f(p, xi).squeeze(0)) if outputs == 1 else jacrev(f), in_dims=(None, 0))
        parts = []
        for i in range(0, len(x), chunk):
            jac = fn(trained, x[i:i + chunk])
            parts.append(torch.cat([jac[k].reshape(len(jac[k]), outputs, -1) for k in names], dim=2))
    finally:
        model.train(was)
    return torch.cat(parts)


def empirical_ntk(model: nn.Module, x: torch.Tensor, names: list[str] | None = None,
                  max_bytes: int = MAX_JACOBIAN_BYTES) -> torch.Tensor:
    """Theta(x_i, x_j) = sum over outputs of <df_c(x_i)/dtheta, df_c(x_j)/dtheta> / outputs (n x n)."""
    names = names or [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        outputs = model.eval()(x[:1]).shape[1]
    model.train()
    need = jacobian_bytes(model, names, len(x), outputs)
    if need > max_bytes:
        per = need / len(x)
        raise ValueError(f"--ntk-samples: the NTK of {len(x):,} examples needs a {need / 2 ** 30:.1f} GiB Jacobian "
                         f"({per / 2 ** 20:.1f} MiB per example); at most {int(max_bytes // per):,} examples fit "
                         f"in the {max_bytes / 2 ** 30:.0f} GiB allowed")
    j = jacobian(model, x, names)
    return torch.einsum("icp,jcp->ij", j, j) / outputs


def direct_ntk(model: nn.Module, x: torch.Tensor, names: list[str] | None = None) -> torch.Tensor:
    """The same kernel from one autograd gradient per example and output (for tests)."""
    names = names or [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    model.eval()
    rows = []
    for xi in x:
        out = model(xi.unsqueeze(0)).squeeze(0)
        rows.append(torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(
            out[c], [params[k] for k in names], retain_graph=True)]) for c in range(len(out))]))
    model.train()
    j = torch.stack(rows)
    return torch.einsum("icp,jcp->ij", j, j) / j.shape[1]


@dataclass(frozen=True)
class AffineFit:
    alpha: float   # coefficient of X X^T / d
    b: float       # constant
    c: float       # identity (reported; not part of the linear model)
    error: float   # ||Theta - (alpha G + b 11^T)||_2 / ||Theta||_2
    error_with_c: float  # the same with c I included

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def data_kernel(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1).double()
    return flat @ flat.T / flat.shape[1]


def affine_error(theta: torch.Tensor, x: torch.Tensor, alpha: float, b: float, c: float = 0.0) -> float:
    theta = theta.double()
    k = alpha * data_kernel(x) + b + c * torch.eye(len(theta), dtype=theta.dtype)
    return float(torch.linalg.matrix_norm(theta - k, ord=2) / torch.linalg.matrix_norm(theta, ord=2))


def fit_affine(theta: torch.Tensor, x: torch.Tensor) -> AffineFit:
    """Least squares over all n^2 entries: Theta_ij ~ alpha G_ij + b + c [i = j]."""
    theta, g = theta.double(), data_kernel(x)
    n = len(theta)
    eye = torch.eye(n, dtype=theta.dtype)
    basis = torch.stack([g.flatten(), torch.ones(n * n, dtype=theta.dtype), eye.flatten()], dim=1)
    coef = torch.linalg.lstsq(basis, theta.flatten().unsqueeze(1), driver="gelsd").solution.flatten().tolist()
    alpha, b, c = coef
    return AffineFit(alpha, b, c, affine_error(theta, x, alpha, b), affine_error(theta, x, alpha, b, c))
