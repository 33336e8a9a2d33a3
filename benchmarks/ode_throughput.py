"""ODE throughput: a grid of parameter points integrated with jaxadv's vmapped RK4 (float64)
against the same number of ``scipy.integrate.solve_ivp`` calls on a NumPy/SciPy right-hand side.

The peer is what a researcher would write: the closed-form Gaussian averages of the quadratic
loss in NumPy (``<erf^2 X>`` by 24-node Gauss--Hermite, as in jaxadv), one adaptive
``solve_ivp`` (RK45) per parameter point. It is timed on an evenly spread subset of the grid and
extrapolated linearly to the whole grid (each call is independent, so the cost is additive);
the JSON says so (``peer.extrapolated``).

Accuracy is matched on the result: the end points ``(R, b)`` at ``alpha_max`` of both are
compared on the peer's subset, and the maximum difference is reported. jaxadv is timed at its
default step ``dt = 0.05`` and at coarser steps (``DT_LADDER``); the headline is the coarsest
step whose end points still agree with the peer to ``TOL_RESULT``. The peer's adaptive RK45
needs only ~750 right-hand-side evaluations to reach alpha = 1000; RK4 at ``dt = 0.05`` makes
80,000, so the step size, not the cost of one evaluation, decides the ratio.

Run: ``python -m benchmarks.ode_throughput [--quick]``.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

NAME = "ode_throughput"

# full: the 64 x 64 grid of the issue; quick: 4 x 8
SIZES = {
    "full": dict(n_eps=64, n_prior=64, n_peer=64, repeats=3, peer_repeats=1),
    "quick": dict(n_eps=4, n_prior=8, n_peer=8, repeats=3, peer_repeats=1),
    "tiny": dict(n_eps=2, n_prior=2, n_peer=2, repeats=1, peer_repeats=1, alpha_max=20.0),
}
ALPHA_MAX = 1000.0
DT_DEFAULT = 0.05
DT_LADDER = (0.05, 0.5, 1.0, 2.0)  # the default step and coarser ones
RTOL, ATOL = 1e-9, 1e-11   # solve_ivp tolerances of the peer
TOL_RESULT = 1e-6          # end points of jaxadv and the peer must agree to this


# --- the peer: NumPy/SciPy right-hand side --------------------------------------------------

def make_numpy_rhs(prior, rho, v1, v2, eta_w, eta_b, eps):
    """``f(alpha, y)`` for ``solve_ivp``: the order-parameter ODE of the quadratic loss."""
    from scipy.special import erf

    t_gh, w_gh = np.polynomial.hermite.hermgauss(24)
    t_gh, w_gh = np.sqrt(2.0) * t_gh, w_gh / np.sqrt(np.pi)
    tau = np.array([1.0, -1.0])
    p = np.array([prior, 1.0 - prior])
    v = np.array([v1, v2])
    a, c = 1 + 2 * v, 1 + 4 * v
    sq_a, sq_ac, sq_c, sq_c6 = np.sqrt(a), np.sqrt(a * c), np.sqrt(c), np.sqrt(c * (1 + 6 * v))
    sd_x = np.sqrt(v / c)

    def rhs(alpha, y):
        R, b = y
        m = tau * rho * R / 2 - b - tau * eps
        d1 = (2 / np.sqrt(np.pi)) * np.exp(-m * m / a) / sq_a * (tau - erf(m / sq_ac))
        x = (m / c)[:, None] + sd_x[:, None] * t_gh
        e2 = (erf(x) ** 2) @ w_gh
        d2 = (4 / np.pi) * np.exp(-2 * m * m / c) / sq_c * (1 - 2 * tau * erf(m / sq_c6) + e2)
        dR = eta_w * (1 - R * R) * (rho / 2) * np.sum(p * tau * d1) - (eta_w ** 2 / 2) * R * np.sum(p * v * d2)
        db = -eta_b * np.sum(p * d1)
        return np.array([dR, db])

    return rhs


def peer_solve(point, alpha_max):
    from scipy.integrate import solve_ivp

    sol = solve_ivp(make_numpy_rhs(*point), (0.0, alpha_max), np.array([0.0, 0.0]), method="RK45",
                    rtol=RTOL, atol=ATOL)
    return sol.y[:, -1], sol.nfev


def main(quick: bool = False, tiny: bool = False) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jaxadv import ModelParams
    from jaxadv.ode import solve_ode
    from benchmarks.common import time_interleaved

    size = SIZES["tiny" if tiny else "quick" if quick else "full"]
    alpha_max = size.get("alpha_max", ALPHA_MAX)
    ne, npr = size["n_eps"], size["n_prior"]
    eps, prior = np.meshgrid(np.linspace(0.0, 1.5, ne), np.linspace(0.05, 0.95, npr), indexing="ij")
    eps, prior = eps.ravel(), prior.ravel()
    G = eps.size
    base = ModelParams()
    params = ModelParams(*(np.broadcast_to(np.asarray(x, np.float64), (G,)).copy()
                           for x in base._replace(prior=prior, eps=eps)))
    P = ModelParams(*(jnp.asarray(x, jnp.float64) for x in params))

    def run(dt):
        return lambda: solve_ode(P, alpha_max, 1, dt=dt)

    jax_times = time_interleaved({f"dt={dt}": run(dt) for dt in DT_LADDER}, repeats=size["repeats"])
    ends = {}
    for dt in DT_LADDER:
        sol = run(dt)()
        ends[dt] = np.stack([np.asarray(sol.R)[:, -1], np.asarray(sol.b)[:, -1]], axis=1)

    # peer on an evenly spread subset
    idx = np.unique(np.linspace(0, G - 1, size["n_peer"]).round().astype(int))
    peer_times, peer_cpu = [], []
    for _ in range(size["peer_repeats"]):
        t0, c0 = time.perf_counter(), time.process_time()
        res = [peer_solve(tuple(float(np.asarray(x)[i]) for x in params), alpha_max) for i in idx]
        peer_times.append(time.perf_counter() - t0)
        peer_cpu.append(time.process_time() - c0)
    peer_ends = np.stack([r[0] for r in res])
    nfev = [int(r[1]) for r in res]
    peer_subset = float(np.median(peer_times))
    peer_full = peer_subset * G / idx.size

    figures = {}
    for dt in DT_LADDER:
        t = jax_times[f"dt={dt}"]
        diff = float(np.max(np.abs(ends[dt][idx] - peer_ends)))
        figures[f"jaxadv_dt={dt}"] = {
            **t,
            "dt": dt, "rk4_steps": int(math.ceil(alpha_max / dt)),
            "per_point_s": t["median_s"] / G,
            "cpu_per_point_s": t["cpu_median_s"] / G,
            "speedup_vs_peer": peer_full / t["median_s"],
            "speedup_vs_peer_low": peer_full / t["max_s"],
            "speedup_vs_peer_cpu_time": float(np.median(peer_cpu)) * G / idx.size / t["cpu_median_s"],
            "max_abs_diff_end_vs_peer": diff,
            "agrees_within_tol": diff <= TOL_RESULT,
        }
    ok = [dt for dt in DT_LADDER if figures[f"jaxadv_dt={dt}"]["agrees_within_tol"]]
    best = max(ok) if ok else None
    return {
        "meta": {"dtype": "float64", "grid": [ne, npr], "points": G, "alpha_max": alpha_max,
                 "grid_axes": {"eps": [0.0, 1.5], "prior": [0.05, 0.95]},
                 "other_params": {k: getattr(base, k) for k in ("rho", "v1", "v2", "eta_w", "eta_b")},
                 "tolerance_on_result": TOL_RESULT, "size": "tiny" if tiny else "quick" if quick else "full"},
        "jaxadv": figures,
        "peer": {"what": "scipy.integrate.solve_ivp RK45 per point, NumPy/SciPy rhs, 24-node Gauss-Hermite",
                 "rtol": RTOL, "atol": ATOL, "points_timed": int(idx.size),
                 "subset_s": peer_subset, "subset_repeats": len(peer_times),
                 "per_point_s": peer_subset / idx.size, "extrapolated": True,
                 "extrapolated_full_grid_s": peer_full, "nfev_median": float(np.median(nfev))},
        "headline": {"speedup_dt_default": figures[f"jaxadv_dt={DT_DEFAULT}"]["speedup_vs_peer"],
                     "coarsest_dt_within_tol": best,
                     "speedup_coarsest_dt_within_tol": figures[f"jaxadv_dt={best}"]["speedup_vs_peer"] if best else None,
                     "target": 100.0},
    }


if __name__ == "__main__":
    from benchmarks.common import cli
    cli(NAME, main)
