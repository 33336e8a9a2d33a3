"""Committee throughput: the two-layer ODE (K = 2, 3) and Monte Carlo, with the single-layer engine
measured beside them in the same run as the peer.

* ODE: ``solve_committee_ode`` on XOR to ``alpha_max`` with a fixed RK4 step (float64), per attack,
  against ``jaxadv.solve_ode`` on the two-cluster model with the same step count. Reported: seconds
  per solve and per right-hand-side evaluation, and the quadrature nodes per evaluation.
* Monte Carlo: ``simulate_committee`` (K = 2, FGM; K = 2, worst case) against ``jaxadv.simulate``
  at the same N, replicas and steps (float32). Reported: nanoseconds per replica-step and per
  replica-step-dimension.

Compile time is the first call, timed apart; figures are medians of interleaved repeats
(``benchmarks/common.py``). Run: ``python -m benchmarks.committee_throughput [--quick|--tiny]``.
"""

from __future__ import annotations

NAME = "committee_throughput"

SIZES = {
    "full": dict(alpha_max=10.0, dt=0.05, N=1000, replicas=64, mc_alpha=2.0, repeats=5),
    "quick": dict(alpha_max=4.0, dt=0.1, N=500, replicas=32, mc_alpha=1.0, repeats=3),
    "tiny": dict(alpha_max=0.2, dt=0.1, N=50, replicas=4, mc_alpha=0.2, repeats=1),
}


def main(quick: bool = False, tiny: bool = False) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxadv
    from benchmarks.common import ratio, time_interleaved
    from jaxadv.committee import (
        CommitteeParams,
        CommitteeSpec,
        GaussRule,
        simulate_committee,
        solve_committee_ode,
        tensor_nodes,
        xor,
    )
    from jaxadv.committee.quadrature import DEFAULT_RULE

    size = "tiny" if tiny else ("quick" if quick else "full")
    s = SIZES[size]
    mix = xor(3.0, 1.0)
    params = CommitteeParams(eta_w=1.0, eta_b=0.5, eta_v=0.0, eps=0.3)
    start = {
        2: dict(Q0=[[1, 0.2], [0.2, 1]], R0=[[0.4, 0.1], [-0.1, 0.3]]),
        3: dict(Q0=[[1, 0.2, -0.1], [0.2, 1, 0.3], [-0.1, 0.3, 1]], R0=[[0.4, 0.1], [-0.1, 0.3], [0.2, -0.3]]),
    }
    n_steps = int(round(s["alpha_max"] / s["dt"]))
    ode_cases = {
        "K=2 fgm": (2, "fgm", DEFAULT_RULE),
        "K=2 pgd(3)": (2, "pgd", DEFAULT_RULE),
        "K=2 worst": (2, "worst", DEFAULT_RULE),
        "K=3 fgm": (3, "fgm", GaussRule(4, 6, 7.0)),
    }
    if tiny:
        ode_cases = {k: v for k, v in ode_cases.items() if k in ("K=2 fgm", "K=3 fgm")}
    contenders = {}
    for name, (K, attack, rule) in ode_cases.items():
        spec = CommitteeSpec(K=K, attack=attack, pgd_steps=3, pgd_step=0.15)
        contenders[name] = lambda spec=spec, K=K, rule=rule: (
            solve_committee_ode(mix, params, spec, s["alpha_max"], 1, dt=s["dt"], rule=rule, **start[K]).R
        )
    mp = jaxadv.ModelParams(prior=0.5, rho=2.0, eta_w=1.0, eta_b=0.5, eps=0.3)
    contenders["single layer (jaxadv.solve_ode)"] = lambda: jaxadv.solve_ode(mp, s["alpha_max"], 1, dt=s["dt"]).R
    with jax.enable_x64(True):  # scoped: the Monte Carlo below and the benchmarks after this one keep float32
        ode = time_interleaved(contenders, s["repeats"])
    single = ode["single layer (jaxadv.solve_ode)"]
    for name, (K, _attack, rule) in ode_cases.items():
        ode[name]["rhs_evals"] = 4 * n_steps
        ode[name]["s_per_rhs"] = ode[name]["median_s"] / (4 * n_steps)
        ode[name]["nodes_per_cluster"] = int(tensor_nodes(K, rule)[0].shape[0])
        ode[name]["over_single_layer"] = ratio(ode[name], single)

    N, reps = s["N"], s["replicas"]
    steps = int(round(s["mc_alpha"] * N))
    mc_cases = {"K=2 fgm": CommitteeSpec(K=2, attack="fgm"), "K=2 worst": CommitteeSpec(K=2, attack="worst")}
    mc_contenders = {
        name: (
            lambda spec=spec: (
                simulate_committee(
                    jax.random.key(0),
                    mix,
                    params,
                    spec,
                    N=N,
                    alpha_max=s["mc_alpha"],
                    n_save=1,
                    replicas=reps,
                    dtype=jnp.float32,
                ).R
            )
        )
        for name, spec in mc_cases.items()
    }
    mc_contenders["single layer (jaxadv.simulate)"] = lambda: (
        jaxadv.simulate(jax.random.key(0), mp, N=N, alpha_max=s["mc_alpha"], n_save=1, replicas=reps).R
    )
    mc = time_interleaved(mc_contenders, s["repeats"])
    for row in mc.values():
        row["ns_per_replica_step"] = 1e9 * row["median_s"] / (steps * reps)
        row["ns_per_elem"] = row["ns_per_replica_step"] / N
    for name in mc_cases:
        mc[name]["over_single_layer"] = ratio(mc[name], mc["single layer (jaxadv.simulate)"])
    return {
        "meta": {
            "size": size,
            "dtype": {"ode": "float64", "mc": "float32"},
            "sizes": dict(s, ode_steps=n_steps, mc_steps=steps),
            "mixture": "xor(rho=3, v=1)",
        },
        "ode": ode,
        "mc": mc,
        "headline": {
            "ode_K2_fgm_over_single_layer": ode["K=2 fgm"]["over_single_layer"]["median"],
            "mc_K2_fgm_over_single_layer": mc["K=2 fgm"]["over_single_layer"]["median"],
        },
    }


if __name__ == "__main__":
    from benchmarks.common import cli

    cli(NAME, main)
