"""Issue 10: one figure style; the listed figure faults (colours, error bars, ticks, legend,
symlog, CE legend). Figures are captured before saving and inspected."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from driftlab.reports import figures, style, theory_plots


@pytest.fixture
def captured(monkeypatch):
    figs = []

    def keep(fig, *args):
        figs.append(fig)
        return "captured.png"

    monkeypatch.setattr(figures, "_save", keep)
    monkeypatch.setattr(theory_plots, "_save", keep)
    yield figs
    plt.close("all")


SPIKE_ACTS = ["relu", "relu2", "clipped_relu2:8", "clipped_relu2:15", "gelu", "gelu2",
              "clipped_gelu2:8"]


def test_every_activation_label_gets_its_own_colour():
    colors = style.colors_for(SPIKE_ACTS + ["silu", "tanh"])
    assert len(set(colors.values())) == len(colors)
    assert style.colors_for(["relu2"])["relu2"] == style.colors_for(["gelu", "relu2"])["relu2"]


def test_spikes_distinct_colours_and_error_bars_stay_on_the_log_axis(captured):
    rows = [{"act": a, "spike_ratio": [1.0, 40.0, 2.0], "val_loss": [3.0, 3.1, 3.2]}
            for a in SPIKE_ACTS]  # a CI over 3 seeds reaching far below 0
    figures.spikes(rows, "x.png", "spikes")
    ax = captured[0].axes[0]
    assert ax.get_yscale() == "log"
    colours = [tuple(p.get_facecolor()) for p in ax.patches]
    assert len(set(colours)) == len(SPIKE_ACTS)
    for coll in ax.collections:  # the error bars
        for seg in coll.get_segments():
            assert np.min(seg[:, 1]) > 0


def test_first_step_ticks_markers_and_dashed_legend(captured):
    rows = [{"act": a, "width": w, "measured": -1e-4 * w ** -0.5, "measured_se": 1e-6,
             "predicted": -1e-4 * w ** -0.5, "predicted_large_width": -1e-4 * w ** -0.5}
            for a in ("relu", "gelu", "tanh") for w in (16, 64, 256)]
    figures.first_step(rows, "x.png", "first step")
    ax = captured[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64", "256"]
    assert not [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("n → ∞" in lab for lab in labels)  # the dashed lines are in the legend
    lo, hi = ax.get_xlim()
    assert lo < 16 and hi > 256  # end markers not clipped


def test_drift_vs_width_has_no_symlog_and_tanh_on_its_own_axis(captured, monkeypatch):
    from driftlab.montecarlo.stats import MCResult
    from driftlab.theory.expected_grad import Analytic

    def fake_mc(setting, budget):
        mean = 0.0 if setting.act == "tanh" else 1e-3 / setting.width
        return {"W2": MCResult(mean + 1e-6, 1e-6, 100, 800)}

    def fake_value(setting, budget=None):
        return Analytic(0.0 if setting.act == "tanh" else 1e-3 / setting.width, "closed form")

    monkeypatch.setattr(theory_plots.estimators, "estimate_drift", fake_mc)
    monkeypatch.setattr(theory_plots.stein_reduced, "drift", fake_value)
    monkeypatch.setattr(theory_plots.expected_grad, "drift_large_width", fake_value)
    theory_plots.plot_drift_vs_width("unused", 0, quick=True)
    axes = captured[0].axes
    assert all(a.get_yscale() != "symlog" for a in axes)
    tanh_axes = [a for a in axes if a.get_legend() and
                 any("tanh" in t.get_text() for t in a.get_legend().get_texts())]
    assert len(tanh_axes) == 1 and tanh_axes[0].get_yscale() == "linear"


def test_gradient_plot_says_the_ce_curve_is_not_conditional(captured, monkeypatch):
    rng = np.random.default_rng(0)
    monkeypatch.setattr(theory_plots.estimators, "sample_preactivation_grads",
                        lambda s, b: (rng.normal(size=20000), rng.normal(size=20000)))
    theory_plots.plot_gradient_vs_preactivation("unused", 0, quick=True)
    labels = [t.get_text() for t in captured[0].axes[0].get_legend().get_texts()]
    assert any("mean softmax factor" in lab and "not conditional" in lab for lab in labels)


def test_one_style_for_all_figures(captured):
    figures.spikes([{"act": "relu", "spike_ratio": [2.0, 3.0], "val_loss": [1.0, 1.1]}],
                   "x.png", "t")
    ax = captured[0].axes[0]
    assert ax.yaxis.label.get_fontsize() == style.RC["axes.labelsize"]
    assert not ax.spines["top"].get_visible()
