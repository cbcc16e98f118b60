"""collect_drift / run_drift_curve exclude output heads from the layer average and show
them separately; collect_spikes reads every tap and the p-ratio."""

import json

import numpy as np
import pytest

from driftlab.reports.report import Run, collect_spikes, run_drift_curve


def _run(tmp_path, summary, records, tags=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return Run(tmp_path, {"tags": tags or {"arch": "mlp", "act": "relu"}}, summary)


RECORDS = [{"step": s, "taps": {"layer0": {"grad_pos_mean": 0.5}, "layer1": {"grad_pos_mean": 9.0}},
            "weights": {"layer1/w": {"mean_change": -0.1 * s}, "head/w": {"mean_change": 5.0 * s}}}
           for s in (0, 10)]


@pytest.mark.parametrize("legacy", [False, True])
def test_head_is_not_averaged_into_layers(tmp_path, legacy):
    layer0 = {"downstream": "layer1/w", "w_std_init": 1.0}
    head = {"downstream": "head/w", "w_std_init": 2.0}
    if legacy:  # summaries written before output heads were separate
        summary = {"layers": {"layer0": layer0, "layer1": head}}
    else:
        summary = {"layers": {"layer0": layer0}, "heads": {"head/w": {"reads": "layer1", **head}}}
    c = run_drift_curve(_run(tmp_path / str(legacy), summary, RECORDS))
    np.testing.assert_allclose(c["w_rel"], [0.0, -1.0])  # layer1/w only
    np.testing.assert_allclose(c["gpos"], [0.5, 0.5])  # the head-read tap is not a layer
    np.testing.assert_allclose(c["w_rel_heads"], [0.0, 25.0])


def test_spikes_cover_every_tap_and_the_p_ratio(tmp_path):
    def summary(ratio, ratio_p):
        taps = {t: {"spike_ratio": ratio * k, "spike_ratio_p": ratio_p * k, "max_abs": 1.0,
                    "sparsity": 0.5, "massive_count": 0.0} for k, t in ((1, "layer0"), (2, "layer1"))}
        return {"layers": {"layer0": taps["layer0"]}, "taps": taps, "val_loss": 1.0}

    runs = [_run(tmp_path / "a", summary(10.0, 10.0), [], {"act": "relu"}),
            _run(tmp_path / "b", summary(400.0, 20.0), [], {"act": "relu2"})]
    rows = {r["act"]: r for r in collect_spikes(runs)}
    assert rows["relu2"]["spike_ratio"] == [800.0]  # max over both taps (layer1 unmapped)
    assert rows["relu2"]["amplification"] == pytest.approx(40.0)
    assert rows["relu2"]["amplification_p"] == pytest.approx(2.0)
    assert set(rows["relu"]["per_layer_ratio_p"]) == {"layer0", "layer1"}
