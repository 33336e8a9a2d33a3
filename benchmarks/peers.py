"""Peers of the Monte Carlo benchmark: the same adversarial SGD step as
:func:`benchmarks.mc_throughput.numpy_steps`, written as a researcher would in PyTorch (CPU,
batched over replicas, ``torch.no_grad``) and in numba (an ``@njit`` loop over replicas and
coordinates). Both are optional (``pip install jaxadv[bench]``): :func:`available` says which are
installed and why the others are skipped.

The algorithm, per step and replica (float32, B = e_1, quadratic loss on erf):
draw tau = +-1 with probability prior, xi = tau rho/2 B + sqrt(v_tau) z, attack
xi <- xi - tau eps w, x = w.xi - b, delta = (tau - erf x) 2/sqrt(pi) exp(-x^2),
w <- (w + eta_w/N delta xi) / ||.||, b <- b - eta_b/N delta.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

__all__ = ["available", "TorchPeer", "NumbaPeer"]


def available() -> dict:
    """``{name: None}`` for each installed peer, ``{name: reason}`` for a missing one."""
    out = {}
    for name, module in (("torch", "torch"), ("numba", "numba")):
        out[name] = (
            None
            if importlib.util.find_spec(module)
            else (f"{module} is not installed (pip install 'jaxadv[bench]'); the {name} peer is skipped")
        )
    return out


class TorchPeer:
    """PyTorch CPU, batched over replicas; ``step(n)`` advances all replicas by ``n`` steps.

    ``threads``: intra-op threads during ``step`` (default 1; ``None``: PyTorch's default, one per core).
    On a loaded 2-core machine PyTorch's default was 7 to 40 times slower than one thread (threads
    spinning for a busy core); on a quiet one it is 5-25 % faster. ``mc_throughput`` times both and takes
    the faster as the peer."""

    def __init__(self, params, replicas: int, N: int, seed: int = 0, threads: int | None = 1):
        import torch

        self.torch, self.threads = torch, threads
        self.gen = torch.Generator().manual_seed(seed)
        self.p = [float(x) for x in params]
        w = torch.randn(replicas, N, generator=self.gen)
        self.w, self.b = w / w.norm(dim=1, keepdim=True), torch.zeros(replicas)

    def step(self, n_steps: int):
        torch = self.torch
        prior, rho, v1, v2, eta_w, eta_b, eps = self.p
        w, b, gen = self.w, self.b, self.gen
        R, N = w.shape
        c = 2 / math.sqrt(math.pi)
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.no_grad():
            for _ in range(n_steps):
                tau = torch.where(torch.rand(R, generator=gen) < prior, 1.0, -1.0)
                sd = torch.sqrt(torch.where(tau > 0, v1, v2))
                xi = sd[:, None] * torch.randn(R, N, generator=gen)
                xi[:, 0] += tau * (rho / 2)  # + tau rho/2 B, B = e_1
                xi -= (tau * eps)[:, None] * w  # attack: xi - tau eps w
                x = (w * xi).sum(dim=1) - b
                delta = (tau - torch.erf(x)) * c * torch.exp(-x * x)
                w = w + (eta_w / N) * delta[:, None] * xi
                w = w / w.norm(dim=1, keepdim=True)
                b = b - (eta_b / N) * delta
        torch.set_num_threads(before)
        self.w, self.b = w, b
        return w

    def overlap(self) -> float:
        return float(self.w[:, 0].mean())


_NUMBA_KERNEL = None


def _numba_kernel():
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        from numba import njit

        @njit(cache=False)
        def steps(w, b, prior, rho, v1, v2, eta_w, eta_b, eps, n_steps, xi):
            R, N = w.shape
            c = 2.0 / math.sqrt(math.pi)
            s1, s2 = math.sqrt(v1), math.sqrt(v2)
            for r in range(R):
                for _ in range(n_steps):
                    tau = 1.0 if np.random.random() < prior else -1.0
                    sd = s1 if tau > 0 else s2
                    x = 0.0
                    for j in range(N):
                        v = sd * np.random.standard_normal() - tau * eps * w[r, j]
                        if j == 0:
                            v += tau * rho / 2
                        xi[j] = v
                        x += w[r, j] * v
                    x -= b[r]
                    delta = (tau - math.erf(x)) * c * math.exp(-x * x)
                    g = eta_w / N * delta
                    norm2 = 0.0
                    for j in range(N):
                        w[r, j] += g * xi[j]
                        norm2 += w[r, j] * w[r, j]
                    inv = 1.0 / math.sqrt(norm2)
                    for j in range(N):
                        w[r, j] *= inv
                    b[r] -= eta_b / N * delta

        @njit
        def seed(s):
            np.random.seed(s)

        _NUMBA_KERNEL = (steps, seed)
    return _NUMBA_KERNEL


class NumbaPeer:
    """numba ``@njit``: a loop over replicas, steps and coordinates, float32 arrays (single thread)."""

    def __init__(self, params, replicas: int, N: int, seed: int = 0):
        self.kernel, seed_fn = _numba_kernel()
        seed_fn(seed)
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((replicas, N), dtype=np.float32)
        self.w = w / np.linalg.norm(w, axis=1, keepdims=True)
        self.b = np.zeros(replicas, np.float32)
        self.xi = np.empty(N, np.float32)
        self.p = [float(x) for x in params]

    def step(self, n_steps: int):
        self.kernel(self.w, self.b, *self.p, int(n_steps), self.xi)
        return self.w

    def overlap(self) -> float:
        return float(self.w[:, 0].mean())
