"""A frozen confirmatory plan: loading it, its digest, and the runs it asks for.

A plan (``reports/plans/confirm-v<N>.json``) is data, committed before any run it judges
and never edited afterwards: a change is a new version on new seeds. It declares every
claim's cells (statistic, predicted direction, test, margin δ, n from a pilot's SD, and
whether this stage runs the cell or defers it), the multiplicity rule, the exclusions (on
training criteria only), the words, the reserved seed range, and ``runs``: which preset
cells run at which n. Its digest (SHA-256 of the file's bytes, first
:data:`DIGEST_CHARS` hex characters) is written as the tag ``plan`` into every run made
under it, so each record names the plan it was made for.

    plan = load_plan("reports/plans/confirm-v2.json")
    specs = plan_specs(plan)          # {preset: [RunSpec]}; driftlab sweep PLAN.json runs them
    problems = confirmatory_problems(plan, records)   # [] only for a confirmatory set
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

DIGEST_CHARS = 16
PLAN_TAG = "plan"
SCALE = "cpu"
PLANS_DIR = Path(__file__).parent / "plans"


@dataclass(frozen=True)
class Plan:
    """A loaded plan: its path, digest and parsed content."""

    path: str
    digest: str
    data: dict

    @property
    def version(self) -> int:
        return int(self.data["version"])

    @property
    def reserved(self) -> tuple[int, int]:
        lo, hi = self.data["seeds"]["reserved"]
        return int(lo), int(hi)

    @property
    def first_seed(self) -> int:
        return int(self.data["seeds"]["this_version"][0])

    def seeds(self, n: int) -> list[int]:
        """The seeds of a run cell with ``n`` seeds: first, first + 1, …"""
        return [self.first_seed + i for i in range(n)]


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS]


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file; ValueError names the file and what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as err:
        raise ValueError(f"plan {path}: cannot be read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"plan {path}: not JSON ({err.msg}, line {err.lineno})") from None
    for key in ("version", "seeds", "runs", "claims", "alpha"):
        if key not in data:
            raise ValueError(f"plan {path}: field {key!r} missing")
    plan = Plan(str(path), digest_of(raw), data)
    lo, hi = plan.reserved
    first, last = data["seeds"]["this_version"]
    if not lo <= first <= last <= hi:
        raise ValueError(f"plan {path}: seeds.this_version {first}–{last} is not inside the "
                         f"reserved range {lo}–{hi}")
    for i, run in enumerate(data["runs"]):
        if not isinstance(run.get("n"), int) or not 1 <= run["n"] <= last - first + 1:
            raise ValueError(f"plan {path}: runs[{i}].n={run.get('n')!r} invalid; allowed: an "
                             f"integer 1 … {last - first + 1}")
    return plan


def find_plan(digest: str, plans_dir: Path = PLANS_DIR) -> Plan:
    """The plan file in ``plans_dir`` whose digest is ``digest``; ValueError if none is."""
    for path in sorted(Path(plans_dir).glob("*.json")):
        if digest_of(path.read_bytes()) == digest:
            return load_plan(path)
    raise ValueError(f"no plan in {plans_dir} has digest {digest!r} (a plan file edited after "
                     f"its runs no longer matches them)")


def _cell(preset, label: str):
    grid = preset.grids[SCALE]
    cells = grid.cells() if callable(grid.cells) else grid.cells
    for cell in cells:
        if cell.label == label:
            return cell
    raise ValueError(f"plan: preset {preset.name!r} has no {SCALE} cell {label!r}")


def plan_specs(plan: Plan) -> dict[str, list]:
    """{preset: [RunSpec]} of every run the plan asks for, in its order: each run cell is
    a preset's cpu cell (``cell``), optionally renamed (``as``) with config fields
    (``set``) and tags (``tags``) changed, on :meth:`Plan.seeds`, tagged with the plan's
    digest."""
    from driftlab.reports.presets import get_preset

    out: dict[str, list] = {}
    for run in plan.data["runs"]:
        preset = get_preset(run["preset"])
        cell = _cell(preset, run["cell"])
        fields = {**dict(cell.fields), **{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in run.get("set", {}).items()}}
        tags = {**dict(cell.tags), **run.get("tags", {}), PLAN_TAG: plan.digest}
        cell = dataclasses.replace(cell, label=run.get("as", cell.label),
                                   tags=tuple(tags.items()), fields=tuple(fields.items()))
        out.setdefault(preset.name, []).extend(
            cell.spec(preset.name, preset.version, SCALE, seed) for seed in plan.seeds(run["n"]))
    return out


def confirmatory_problems(plan: Plan, records: list[dict]) -> list[str]:
    """Why ``records`` (dicts with ``tags``) are not a confirmatory set of ``plan``: each
    record must carry the plan's digest and a seed in its reserved range, and every run
    the plan asks for must be there. [] when they are."""
    lo, hi = plan.reserved
    problems = []
    for rec in records:
        tags = rec.get("tags", {})
        name = rec.get("run_id", "?")
        if tags.get(PLAN_TAG) != plan.digest:
            problems.append(f"{name}: plan tag {tags.get(PLAN_TAG)!r}, not {plan.digest!r}")
        seed = tags.get("seed")
        if not isinstance(seed, int) or not lo <= seed <= hi:
            problems.append(f"{name}: seed {seed!r} outside the reserved range {lo}–{hi}")
    have = {rec.get("run_id") for rec in records}
    missing = [s.run_id for specs in plan_specs(plan).values() for s in specs
               if s.run_id not in have]
    if missing:
        problems.append(f"{len(missing)} planned runs missing (e.g. {missing[0]})")
    return problems
