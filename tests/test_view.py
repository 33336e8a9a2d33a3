"""What a researcher sees: a fast CLI, readable outputs, figures that show the agreement, the API
matching the CLI on grids, the loader, notebooks with their figures and the citation file."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import nbformat
import numpy as np
import pytest
from matplotlib.figure import Figure

import jaxadv
from jaxadv import ModelParams
from jaxadv.app.cli import _parser, main
from jaxadv.app.io import write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ["01_scenarios.ipynb", "02_sweeps.ipynb", "03_defences.ipynb", "04_verification.ipynb", "06_mnist.ipynb"]
NOTEBOOK_BUDGET = 500_000  # bytes per committed notebook, outputs included


def _run(code):
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    ).stdout


def test_console_script_help_of_every_command_imports_no_jax():
    """``jaxadv [COMMAND] --help`` as the console script runs it (``main()`` reading ``sys.argv``): the
    exit handlers' exception classes once imported JAX and matplotlib before the arguments were parsed."""
    from jaxadv.app.cli import _parser

    commands = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    code = (
        "import sys\nfrom jaxadv.app.cli import main\nsys.argv = ['jaxadv', *sys.argv[1:]]\n"
        "try: main()\nexcept SystemExit as e: code = e.code\n"
        "print('EXIT', code, 'jax' in sys.modules, 'matplotlib' in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for argv in [["--help"], *([c, "--help"] for c in commands)]:
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=ROOT)
        assert res.stdout.strip().endswith("EXIT 0 False False"), (argv, res.stdout[-300:], res.stderr[-300:])
    assert len(commands) >= 9


def test_help_imports_no_jax_and_shows_defaults():
    out = _run(
        "import sys\nfrom jaxadv.app.cli import _parser\np = _parser()\n"
        "for c in ('run', 'compare-defences', 'sweep', 'verify', 'mnist'):\n"
        "    try: p.parse_args([c, '--help'])\n"
        "    except SystemExit: pass\n"
        "print('JAX', 'jax' in sys.modules, 'matplotlib' in sys.modules)"
    )
    assert out.strip().endswith("JAX False False"), out[-200:]
    assert "(default: 4000)" in out and "(default: 100,300,1000,3000)" in out  # verify
    assert "(default: scenario2)" in out and "--quiet" in out.split("compare-defences")[1]


def test_every_option_with_a_default_shows_it():
    sub = next(a for a in _parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        for a in p._actions:
            if a.option_strings and a.default not in (None, False, [], "==SUPPRESS==") and a.help:
                assert "default" in p._get_formatter()._get_help_string(a), (name, a.dest)
        assert text


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "scenario1   unit       balanced clusters" in out and "scenario2   unit       unbalanced clusters" in out
    assert "{" not in out and re.search(r"^  replicas\s+unit,committee,pair\s+run\s+64\s+Monte Carlo", out, flags=re.M)
    # every student's presets, each with its student: the committee's and the surrogate/target pair's too
    for name, student in (("committee", "committee"), ("xor", "committee"), ("certified", "committee")) + (
        ("transfer", "pair"),
        ("blackbox", "pair"),
    ):
        assert re.search(rf"^  {name}\s+{student}\s+\S+=", out, flags=re.M), name
    assert "K=4" in out.split("  xor", 1)[1].splitlines()[0]


def test_sweep_command_writes_figures(tmp_path, capsys):
    toml = tmp_path / "s.toml"
    toml.write_text(
        "alpha_max = 10\nn_save = 2\ndt = 1.0\n[grid]\neps = {linspace = [0.0, 1.5, 11]}\nprior = [0.5, 0.7]\n"
    )
    assert main(["sweep", str(toml), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "eps_test = eps of each row" in out
    for f in ("heatmaps.png", "tradeoff.png", "sweep.csv"):
        assert (tmp_path / "o" / f).stat().st_size > 1000
    tables = jaxadv.load(str(tmp_path / "o"))
    assert 0.15 in set(tables["sweep"]["eps"].tolist())  # rounded grid, not 0.15000000000000002
    with open(tmp_path / "o" / "sweep.csv") as f:
        assert "0.15000000000000002" not in f.read()


def test_load_reads_strings_numbers_and_config(tmp_path):
    write_csv(str(tmp_path / "defences.csv"), {"defence": np.array(["none", "noise"]), "clean": [0.25, 0.5]})
    (tmp_path / "config.json").write_text(json.dumps({"eps": 1.0}))
    d = jaxadv.load(str(tmp_path))
    assert d["defences"]["defence"].tolist() == ["none", "noise"]
    np.testing.assert_array_equal(d["defences"]["clean"], [0.25, 0.5])
    assert d["config"] == {"eps": 1.0}
    with pytest.raises(ValueError, match="directory=.* holds no .csv"):
        (tmp_path / "empty").mkdir()
        jaxadv.load(str(tmp_path / "empty"))


def test_simulate_grid_is_the_per_point_simulation_and_summaries_work_on_grids():
    key = jax.random.key(0)
    P = ModelParams(eps=np.array([0.0, 1.0]), prior=np.array([[0.5], [0.7]]))
    # the reduced sampler compiles fastest; the full one goes through the same grid path
    mc = jaxadv.simulate(key, P, N=40, alpha_max=1.0, n_save=2, replicas=3, sampler="reduced")
    assert mc.R.shape == (2, 2, 3, 3) and mc.alpha.shape == (3,)
    one = jaxadv.simulate(
        jax.random.fold_in(key, 3),
        ModelParams(eps=1.0, prior=0.7),
        N=40,
        alpha_max=1.0,
        n_save=2,
        replicas=3,
        sampler="reduced",
    )
    np.testing.assert_array_equal(mc.R[1, 1], one.R)  # point 3 (C order) = the scalar run with fold_in(key, 3)
    s = jaxadv.mc_summary(mc, P, np.asarray(P.eps))
    assert s["R_mean"].shape == (2, 2, 3) and s["n_finite"].shape == (2, 2, 3)
    np.testing.assert_allclose(s["R_mean"][1, 1], one.R.astype(np.float64).mean(0))
    grid = ModelParams(*(np.broadcast_to(np.asarray(x, float), (2, 2)) for x in P))
    t = jaxadv.ode_table(jaxadv.solve_ode(grid, 1.0, 2, dt=0.5), P, 1.0)
    assert t["robust_error"].shape == (2, 2, 3)
    with pytest.raises(ValueError, match="params: the array-valued parameters do not broadcast"):
        jaxadv.simulate(key, ModelParams(eps=np.zeros(2), prior=np.full(3, 0.6)), N=40, alpha_max=1.0, n_save=1)


def _cols(n=6, shift=0.0):
    a = np.linspace(0, 5, n)
    ode = {"alpha": a, "R": 0.1 * a, "b": -0.1 * a, "test_error": 0.5 - 0.02 * a, "robust_error": 0.8 - 0.02 * a}
    mc = {"alpha": a}
    for k in ("R", "b", "test_error", "robust_error"):
        mc[f"{k}_mean"], mc[f"{k}_sem"] = ode[k] + shift, np.full(n, 0.01)
    mc["R_sem"] = mc["R_sem"].copy()
    mc["b_sem"] = np.where(a == 0, 0.0, 0.01)
    return ode, mc


def test_run_figures_have_a_deviation_panel_in_standard_errors():
    from jaxadv.app.plots import deviation_sem

    ode, mc = _cols(shift=0.02)
    z = deviation_sem(mc["b_mean"], mc["b_sem"], ode["b"])
    assert np.isnan(z[0]) and np.allclose(z[1:], 2.0)
    for fig in (jaxadv.plot_order_parameters(ode, mc, None, "t"), jaxadv.plot_errors(ode, mc, None, 1.0, "t")):
        assert isinstance(fig, Figure) and len(fig.axes) == 4
        assert all(ax.get_ylabel() == "(MC − bare ODE) / SE" for ax in fig.axes[2:])
    fig = jaxadv.plot_errors(ode, mc, None, 0.5, "t")
    assert fig.axes[1].get_ylabel() == "robust error (L2 attack of radius 0.5)"
    assert fig.axes[0].get_ylim()[1] < 0.6  # scaled to the data, not 0-1
    assert len(jaxadv.plot_order_parameters(ode, None, None).axes) == 2


def test_defence_labels_do_not_overlap():
    from jaxadv.app.plots import place_labels

    fig = Figure()
    ax = fig.subplots()
    pts = [(0.2864, 0.6255), (0.2865, 0.6254), (0.27, 0.48)]
    ax.plot(*zip(*pts, strict=True), "o")
    offs = place_labels(ax, pts, ["none", "noise", "adversarial"])
    assert offs[0] != offs[1]


def test_verify_figure_hides_unmeasurable_shift():
    from jaxadv.app.verify import _plot

    rows = [
        dict(
            N=n,
            sampler="reduced",
            std_R=1 / n**0.5,
            std_R_pred=1 / n**0.5,
            std_b=1 / n**0.5,
            std_b_pred=1 / n**0.5,
            mean_dev_R=1e-3,
            mean_dev_R_sem=1.0,
            mean_dev_b=1e-3,
            mean_dev_b_sem=1.0,
            shift_pred_R=1.0 / n,
            shift_pred_b=1e-21,
        )
        for n in (100, 300, 1000)
    ]
    slopes = {
        "std_R_measured": -0.5,
        "std_b_measured": -0.5,
        "shift_R_predicted": -1.0,
        "shift_b_predicted": float("nan"),
        "mean_dev_R_measured": float("nan"),
        "mean_dev_b_measured": float("nan"),
    }
    import tempfile

    fig = _plot(rows, slopes, os.path.join(tempfile.mkdtemp(), "v.png"), "t")
    # the legends sit under the deviation panels (fig.axes[2:]), outside the data
    legends = [" ".join(t.get_text() for t in ax.get_legend().get_texts()) for ax in fig.axes[2:]]
    assert "bias predicted" in legends[0] and "bias predicted" not in legends[1]
    assert all("nan" not in t for t in legends)
    notes = " ".join(t.get_text() for t in fig.axes[1].texts)
    assert "not drawn" in notes and "not measurable" in notes
    assert fig.axes[1].get_ylim()[0] > 1e-6


def test_heatmap_ticks_are_the_grid_values_and_b_is_centred():
    from jaxadv.app.sweep_plots import plot_sweep_heatmaps, plot_tradeoff

    res = jaxadv.sweep(
        jaxadv.make_sweep_config(
            {"eps": [0.0, 1.0], "prior": [0.5, 0.6333333333, 0.9]}, alpha_max=5.0, n_save=1, dt=1.0
        )
    )
    fig = plot_sweep_heatmaps(res, "eps", "prior")
    np.testing.assert_allclose(fig.axes[0].get_xticks(), [0.0, 1.0])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0.5", "0.633", "0.9"]
    lo, hi = fig.axes[2].collections[0].get_clim()
    assert lo == -hi
    fig = plot_tradeoff(res, axis="eps")
    assert "prior=0.633" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_with_their_figures(name):
    path = os.path.join(ROOT, "notebooks", name)
    assert os.path.getsize(path) < NOTEBOOK_BUDGET
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "not executed"
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1
    assert not [o for o in outputs if o.output_type == "error"]


def test_citation_file_matches_the_version():
    text = Path(ROOT, "CITATION.cff").read_text()
    assert f'version: "{jaxadv.__version__}"' in text and "cff-version: 1.2.0" in text
    assert "How to cite" in Path(ROOT, "README.md").read_text()


def test_readme_sweep_example_loads(tmp_path):
    from jaxadv.app.sweep import load_sweep_config

    text = Path(ROOT, "README.md").read_text()
    toml = text.split("## Sweeps", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "s.toml").write_text(toml)
    cfg = load_sweep_config(str(tmp_path / "s.toml"))
    assert cfg.name == "eps_prior" and cfg.grid["eps"][1] == 0.25 and cfg.base["eps_test"] == 1.0
