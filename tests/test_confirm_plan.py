"""The frozen confirmatory plan (reports/plans/confirm-v2.json, reports/confirm_plan.py) and
its decision rules (reports/confirm.py): frozen bytes, seeds, digests, power, words."""

import json
import math

import numpy as np
import pytest

from driftlab.reports import confirm, power
from driftlab.reports.confirm_plan import (PLANS_DIR, confirmatory_problems, find_plan,
                                           load_plan, plan_specs)

PLAN_V2 = PLANS_DIR / "confirm-v2.json"
# The digest under which the v2 runs were made (commit 8521708, before any of them): the
# plan may never change; a change is a new plan file, a new version, on new seeds.
DIGEST_V2 = "6db1418012f8870e"


@pytest.fixture(scope="module")
def plan():
    return load_plan(PLAN_V2)


def test_the_v2_plan_is_frozen(plan):
    assert plan.digest == DIGEST_V2
    assert find_plan(DIGEST_V2).path == plan.path


def test_runs_are_on_reserved_seeds_and_carry_the_digest(plan):
    specs = plan_specs(plan)
    lo, hi = plan.reserved
    assert lo >= 1000  # every earlier sweep, pilot and test used seeds below 1000
    n = sum(r["n"] for r in plan.data["runs"])
    all_specs = [s for ss in specs.values() for s in ss]
    assert len(all_specs) == n == len({s.run_id for s in all_specs})
    for s in all_specs:
        assert lo <= s.config.seed <= hi and s.tag_dict["seed"] == s.config.seed
        assert s.tag_dict["plan"] == DIGEST_V2 and s.tag_dict["size"] == "cpu"


def test_every_run_cell_has_the_power_its_plan_states(plan):
    """For a run cell sized from a pilot: power ≥ 0.8 at the pilot SD's upper 80% limit, the
    stated effect and Holm's strictest level over the claim's run cells."""
    checked = 0
    for claim in plan.data["claims"]:
        run = [c for c in claim["cells"] if c["run"]]
        for c in run:
            if not c.get("sd_upper80"):
                continue
            level = plan.data["alpha"] / len(run)
            if c["test"] == "equivalence":
                p = power.power_tost(c["n"], claim["margin"], c["sd_upper80"], level)
            else:
                p = power.power_one_sided(c["n"], c["effect_for_power"], c["sd_upper80"], level)
            assert p >= 0.8, (claim["key"], c["label"], c["n"], p)
            checked += 1
    assert checked >= 20


def test_run_cells_serve_every_run_claim_cell(plan):
    """Every claim cell that runs is backed by run cells with at least its n."""
    runs = {r.get("as", r["cell"]): r["n"] for r in plan.data["runs"]}
    for claim in plan.data["claims"]:
        for c in claim["cells"]:
            if c["run"] and "run_cell" in c:
                assert runs[c["run_cell"]] >= c["n"], (claim["key"], c["label"])
            if not c["run"]:
                assert c["deferred"], (claim["key"], c["label"])


def _records(plan):
    return [{"run_id": s.run_id, "tags": s.tag_dict}
            for ss in plan_specs(plan).values() for s in ss]


def test_a_complete_set_is_confirmatory_and_each_broken_rule_is_named(plan):
    recs = _records(plan)
    assert confirmatory_problems(plan, recs) == []
    wrong_digest = [dict(recs[0], tags={**recs[0]["tags"], "plan": "0" * 16})] + recs[1:]
    assert any("plan tag" in p for p in confirmatory_problems(plan, wrong_digest))
    old_seed = [dict(recs[0], tags={**recs[0]["tags"], "seed": 3})] + recs[1:]
    assert any("reserved range" in p for p in confirmatory_problems(plan, old_seed))
    untagged = [dict(recs[0], tags={k: v for k, v in recs[0]["tags"].items() if k != "plan"})] + recs[1:]
    assert any("plan tag" in p for p in confirmatory_problems(plan, untagged))
    assert any("missing" in p for p in confirmatory_problems(plan, recs[1:]))


def test_a_changed_plan_file_is_another_plan(tmp_path):
    data = json.loads(PLAN_V2.read_text())
    data["claims"][1]["margin"] = 0.02
    (tmp_path / "v3.json").write_text(json.dumps(data))
    assert load_plan(tmp_path / "v3.json").digest != DIGEST_V2
    with pytest.raises(ValueError, match="no plan in"):
        find_plan(DIGEST_V2, tmp_path)


@pytest.mark.parametrize("bad, match", [("not json", "not JSON"), ('{"version": 2}', "missing")])
def test_a_bad_plan_file_is_named(tmp_path, bad, match):
    (tmp_path / "p.json").write_text(bad)
    with pytest.raises(ValueError, match=match):
        load_plan(tmp_path / "p.json")


# --------------------------------------------------------------------------- decisions


def test_holm_levels_step_down_and_stop():
    # p sorted: 0.001 (α/4 = 0.0125: reject), 0.01 (α/3: reject), 0.04 (α/2 = 0.025: stop)
    levels = confirm.holm_levels([0.04, 0.001, 0.5, 0.01], 0.05)
    assert levels == [0.025, 0.0125, 0.025, 0.05 / 3]


@pytest.mark.parametrize("low, high, side, word", [
    (0.02, 0.05, 1, confirm.HOLDS),              # beyond 0 and beyond δ
    (0.002, 0.008, 1, confirm.HOLDS_SMALL),      # beyond 0, inside ±δ
    (-0.05, -0.02, 1, confirm.REVERSED),
    (-0.008, -0.001, 1, confirm.REVERSED_SMALL),
    (-0.005, 0.004, 1, confirm.ABSENT),          # inside ±δ, contains 0
    (-0.02, 0.03, 1, confirm.INCONCLUSIVE),
    (-0.05, -0.02, -1, confirm.HOLDS),           # predicted −
])
def test_cell_words_from_the_interval(low, high, side, word):
    assert confirm.cell_word(low, high, side, 0.0, 0.01) == word


def test_a_cell_cannot_be_both_holds_and_absent():
    for low in np.linspace(-0.03, 0.03, 25):
        for width in (0.001, 0.005, 0.02):
            w = confirm.cell_word(low, low + width, 1, 0.0, 0.01)
            assert w in (confirm.HOLDS, confirm.HOLDS_SMALL, confirm.REVERSED,
                         confirm.REVERSED_SMALL, confirm.ABSENT, confirm.INCONCLUSIVE)


def _outcome(word):
    return confirm.CellOutcome("c", "+", "superiority", 8, (), word=word)


@pytest.mark.parametrize("words, combine, expected", [
    ([confirm.HOLDS, confirm.HOLDS], "every", "holds"),
    ([confirm.HOLDS, confirm.HOLDS_SMALL], "every", "holds (holds 1, holds, below δ 1)"),
    ([confirm.REVERSED, confirm.REVERSED_SMALL], "every", "reversed (reversed 1, reversed, below δ 1)"),
    ([confirm.HOLDS, confirm.REVERSED, confirm.ABSENT], "every", "not general (holds 1, reversed 1, absent 1)"),
    ([confirm.HOLDS, confirm.INCONCLUSIVE], "every", "inconclusive (holds 1, inconclusive 1)"),
    ([confirm.FAILS, confirm.HOLDS], "any", "holds (fails 1, holds 1)"),
    ([confirm.FAILS, confirm.FAILS], "any", "fails"),
    ([confirm.HOLDS, confirm.MISSING], "every", "incomplete (holds 1, missing 1)"),
])
def test_claim_words(words, combine, expected):
    assert confirm.claim_word([_outcome(w) for w in words], combine, 0) == expected


def test_deferred_cells_are_named_in_the_claim_word():
    assert confirm.claim_word([_outcome(confirm.HOLDS)], "every", 2) == "holds (2 cells deferred)"


def test_planted_effects_get_their_words():
    """A cell with a planted effect of 3δ in the predicted direction holds; the same effect
    with the sign flipped is reversed; 0.3δ at a small SD holds below δ; 0 is absent."""
    rng = np.random.default_rng(0)
    claim = {"margin": 0.01, "null": 0.0}
    cells = [{"label": name, "predicted": "−", "test": "superiority", "n": 16}
             for name in ("big", "flipped", "small", "zero")]
    noise = rng.normal(0, 1, 16)
    noise = (noise - noise.mean()) / noise.std(ddof=1)
    values = {"big": -0.03 + 0.004 * noise, "flipped": 0.03 + 0.004 * noise,
              "small": -0.003 + 0.0005 * noise, "zero": 0.0005 * noise}
    out = {o.label: o.word for o in confirm.decide_cells(cells, values, claim, 0.05)}
    assert out == {"big": confirm.HOLDS, "flipped": confirm.REVERSED,
                   "small": confirm.HOLDS_SMALL, "zero": confirm.ABSENT}


def test_equivalence_primary_p_is_the_tost():
    x = np.array([0.001, -0.002, 0.0005, 0.0015, -0.001, 0.0])
    p = confirm.primary_p(x, "equivalence", 0, 0.0, 0.01)
    ref = power.tost(x, 0.01).p
    assert math.isclose(p, ref, rel_tol=1e-12)  # tol: the same scipy t formula, two spellings
