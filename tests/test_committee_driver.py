"""The committee's Monte Carlo on the project's driver: the same bits as the former one-jit run (kept
here as the reference), resumption after an interrupt bit for bit, the checkpoint file and the CLI."""
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadv.committee import CommitteeParams, CommitteeSpec, two_cluster, xor
from jaxadv.committee import montecarlo as cmc
from jaxadv.committee.lipschitz import project_weights
from jaxadv.committee.ode import check_overlaps
from jaxadv.app import checkpoint as ckm
from jaxadv.mc import driver


@functools.partial(jax.jit, static_argnames=("spec", "K", "N", "steps_per_save", "n_save", "given"))
def _reference_run(replica_keys, mixture, params, Q0, R0, b0, v0, spec, K, N, steps_per_save, n_save, given):
    """The former ``simulate_committee`` kernel: one jit, ``vmap`` over replicas of a ``scan`` over save
    intervals of a ``fori_loop`` over steps (no driver, no devices, no checkpoint)."""
    B = cmc.directions(mixture.centres.shape[1], N, mixture.centres.dtype)

    def one(rkey):
        k_init, k_run = jax.random.split(rkey)
        s0 = cmc.init(k_init, B, K, Q0 if given else None, R0, b0, v0)
        if spec.lipschitz is not None:
            s0 = s0._replace(W=project_weights(s0.W, s0.v, spec.lipschitz))

        def save(s, k):
            def body(i, st):
                mu = k * steps_per_save + i
                return cmc.step(jax.random.fold_in(k_run, mu), st, mixture, params, spec, B)[0]

            s = jax.lax.fori_loop(0, steps_per_save, body, s)
            return s, cmc.observe(s, B)

        _, obs = jax.lax.scan(save, s0, jnp.arange(n_save))
        return jax.tree.map(lambda a, z: jnp.concatenate([a[None], z]), cmc.observe(s0, B), obs)

    return jax.vmap(one)(replica_keys)


def reference(key, mixture, params, spec, *, N, alpha_max, n_save, replicas, Q0=None, R0=None, b0=None, v0=None,
              dtype=jnp.float32):
    K, D = spec.K, mixture.n_directions
    given = Q0 is not None
    Q0, R0 = check_overlaps(K, D, Q0, R0, spec.normalise)
    b0 = np.zeros(K) if b0 is None else np.asarray(b0, float)
    v0 = np.full(K, 1.0 / K) if v0 is None else np.asarray(v0, float)
    steps = max(1, int(round(alpha_max * N / n_save)))
    cast = lambda z: jnp.asarray(z, dtype)
    obs = _reference_run(jax.random.split(key, replicas), type(mixture)(*map(cast, mixture)),
                         CommitteeParams(*map(cast, params)), cast(Q0), cast(R0), cast(b0), cast(v0), spec, K, N,
                         steps, n_save, given)
    return [np.asarray(z) for z in obs]


CASES = {
    "fgm": (two_cluster(), CommitteeParams(eps=0.5), CommitteeSpec(K=2), {}),
    "pgd_random_start_logistic": (xor(), CommitteeParams(eps=0.7, eta_b=0.3),
                                  CommitteeSpec(K=2, attack="pgd", pgd_steps=3, pgd_random_start=True,
                                                loss="logistic"), {}),
    "worst_given_start": (xor(), CommitteeParams(eps=0.4), CommitteeSpec(K=2, attack="worst"),
                          {"Q0": np.eye(2), "R0": np.array([[0.3, 0.1], [0.0, -0.2]])}),
    "trained_v_lipschitz": (two_cluster(prior=0.3), CommitteeParams(eps=0.3, eta_v=0.5, eta_b=0.2),
                            CommitteeSpec(K=3, train_v=True, normalise=False, lipschitz=1.5),
                            {"v0": np.array([0.6, -0.3, 0.2]), "b0": np.array([0.1, 0.0, -0.1])}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_driver_bits_equal_the_one_jit_reference(name):
    mixture, params, spec, extra = CASES[name]
    kw = dict(N=40, alpha_max=0.6, n_save=3, replicas=3, **extra)
    key = jax.random.key(7)
    mc = cmc.simulate_committee(key, mixture, params, spec, **kw)
    ref = reference(key, mixture, params, spec, **kw)
    for f, r in zip(("Q", "R", "b", "v"), ref):
        np.testing.assert_array_equal(getattr(mc, f), r, err_msg=f)
    assert mc.finite.all()
    np.testing.assert_allclose(mc.alpha, np.arange(4) * 8 / 40)
