"""Run ids are the sweep's resume keys: existing run directories and the checked-in records
(reports/reduced/records/*.jsonl) name their runs by them, so no refactor of
reports/presets.py may change a grid's runs, ids, tags or order (the order decides the
shards, reports/sweep.py ``select_shard``). A deliberate change of a grid bumps the preset's
version and updates :data:`GRID_DIGESTS`."""

import hashlib
import json
from pathlib import Path

import pytest

from driftlab.reports.presets import PRESETS, config_dict, get_preset, spec_from_dict

RECORDS = Path(__file__).resolve().parents[1] / "reports" / "reduced" / "records"


def grid_digest(name: str, size: str, seeds: int | None) -> tuple[int, str]:
    """(number of runs, sha256 over the ordered runs' id, kind, label, tags and config)."""
    rows = [[s.run_id, s.kind, s.label, sorted(s.tag_dict.items()), config_dict(s.config)]
            for s in get_preset(name).grid(size, seeds)]
    blob = json.dumps(rows, sort_keys=True, default=str)
    return len(rows), hashlib.sha256(blob.encode()).hexdigest()


# (preset, scale, seeds; None = the scale's default) -> (runs, digest), computed on the
# grids as they stood before presets became tables (commit bbfbb50).
GRID_DIGESTS = {
    ("init", "tiny", None):
        (14, "d15c36391e9bbfce53a9b7a06f034123725afdb28a3b4f110a4c82abd69f32b5"),
    ("init", "tiny", 2):
        (14, "d15c36391e9bbfce53a9b7a06f034123725afdb28a3b4f110a4c82abd69f32b5"),
    # Changed deliberately by the analysis plan (reports/plan.py: ViT 256, GPT on text 48,
    # ResNet 24 seeds, the rest 8) with the init preset's version 2.
    ("init", "cpu", None):
        (376, "5f2063a118978493d0b7e01f7d31d5e48e2856a2d9d46fee6888291734ff2f65"),
    ("init", "cpu", 2):
        (14, "c10b5d391f83970690fb9b16383ca4782ca2d93d4c1b3d6dcd1adf1875ad48db"),
    ("drift", "tiny", None):
        (48, "98261ba79754a6cb1a54dbdbb524950b630e00a1d8dabd9ddeeba0a5a67c7234"),
    ("drift", "tiny", 2):
        (32, "61ef5486a7c29fee240081cf6bc15b3927b301992fdda876a2e694b7822fe3df"),
    ("drift", "cpu", None):
        (162, "eff7bb8278e5cda2a919f313eb687a1be61247784b8680191623b0bec5e71a8a"),
    ("drift", "cpu", 2):
        (42, "3a139fcc36b118a1e8c3dddf31bcd662f78f892a9e4c74b58c2d39dfdfb3ec3e"),
    ("drift", "small", None):
        (60, "0d41060bbaaac6eeb8bbdcafe04ab0c0480bd82b3afe638af0fc3753d212ab94"),
    ("drift", "small", 2):
        (40, "137488185da26e0d34da7e936fa28ec4674ec6ccd4ed762a00587c4f86892757"),
    ("drift", "gpu", None):
        (2, "2ad62c9e8780b836c78500df2ddcd39bd88426a10ccd82d25f021a0af2934cd2"),
    ("drift", "gpu", 2):
        (4, "5b02c8211230df8c4a5fa15c466abcdd37a616ef66730de98eef5b45a65df7d4"),
    ("drift", "paper", None):
        (100, "e66d2d2363be4556015ce70cbe99f0d2491725ffac2736b2e1c3cd2ee451d799"),
    ("drift", "paper", 2):
        (40, "95f4359af797733b9875b86eb4b8cbd61b85da2a908e5fb13e93cbcfa18d7568"),
    ("pins", "tiny", None):
        (18, "0d9042173123e0824c18c120e20164b0efca67c47f4b9fcb7a0fc520d030cfbd"),
    ("pins", "tiny", 2):
        (12, "307b05a4d8822a38651a998375f1c2ce9f9f7549a76cf601f00dbce29919f8d2"),
    ("pins", "cpu", None):
        (33, "af9e4eaa1c01a85eb5648d7b7b747445f6647339508e5e34df264575de238137"),
    ("pins", "cpu", 2):
        (12, "3b6f8cf80f6fd93f9304b2b96710b7c644ecd428fde0de2afe183690d812540d"),
    ("pins", "gpu", None):
        (3, "6529e90f8f8a92c065043d4d6675404e393b985040f46ec64e86d51884bc9dd3"),
    ("pins", "gpu", 2):
        (6, "cf99ba29855bbb017748999eab7f4cdae6f3ec5cb78131274764f9cb425d9a20"),
    ("first_step", "tiny", None):
        (24, "b3e823c48e82ee9e408706e6c1fd3c9fd1abb6e68f908d441a838683eaf3b306"),
    ("first_step", "tiny", 2):
        (24, "b3e823c48e82ee9e408706e6c1fd3c9fd1abb6e68f908d441a838683eaf3b306"),
    ("first_step", "cpu", None):
        (16, "152e9cb2f6952ae9c2cfa420eede889f158f49adf4b47503c27d11e198c6efa6"),
    ("first_step", "cpu", 2):
        (32, "5fc18a1f2196d043bfa4ad8ca029a7e1f741d10394e33326f616b1aee11afed1"),
    ("first_step", "small", None):
        (64, "ea20c8831f6eb48cfcf63afdd1120ee31aa061928b24c2b5b760c87710cf7508"),
    ("first_step", "small", 2):
        (32, "2b3b0cef2a378c912e5f89aab8721b770afda799d7f271048b6d89d12927d8ab"),
    ("first_step", "paper", None):
        (160, "8c8e71b853b52caf03c52dab725e53135a5135780770d648ac8360f5ad4926d2"),
    ("first_step", "paper", 2):
        (40, "782e757713e60334fb25a3cc8ae6efc2c8d92639c49b640bdeea5e35fd09fdd1"),
    ("sparsity_law", "tiny", None):
        (6, "ea1a7a262928490c1ec54d9aeb7786bbb7d0584eeb154fb7e6448b49f60d969d"),
    ("sparsity_law", "tiny", 2):
        (6, "ea1a7a262928490c1ec54d9aeb7786bbb7d0584eeb154fb7e6448b49f60d969d"),
    ("sparsity_law", "cpu", None):
        (9, "79c1eab74acefb3853df92ad14dbcc36a7fe7d3da5f1ae574e8c43a6851256fb"),
    ("sparsity_law", "cpu", 2):
        (6, "e9a24f89ff7a77708af77fd03a1f0cf56659763a77128c29bbf49733c24d3601"),
    ("sparsity_law", "small", None):
        (9, "641f473ae393bda333f4e9e8a484d40d1d63923831e86b28894c9f108c6a2418"),
    ("sparsity_law", "small", 2):
        (6, "0807b49d87c0f239fb5b045bf583e4533d35c563857e5ff7ac854e10a01737ad"),
    ("sparsity_law", "paper", None):
        (15, "529fb258f8edbfa6e626b385e3e4f8b3bde93f3aaec269b16e690fd3a6bb0e36"),
    ("sparsity_law", "paper", 2):
        (6, "338ade466292b5976eadd64f2986a620c6abfd66ba5e43b08d997402160c1dc6"),
    ("tradeoff", "tiny", None):
        (14, "ef17f956f59814350906a3b5561cbed561c4d3524b952b511c23e1c2897864fd"),
    ("tradeoff", "tiny", 2):
        (28, "0dbe363f3fbf9637e1a4310ff64ac9af2251ed9c6873d7eeb2e4e08301207369"),
    ("tradeoff", "cpu", None):
        (60, "d7b8666cb5fc251662611aabe69b3b74ffeb988ee30e5645f96590fa8f0884c4"),
    ("tradeoff", "cpu", 2):
        (40, "a940cfd05c88b7542535969ed71b71eea84407c9caead60343ebb2da09f6b764"),
    ("tradeoff", "small", None):
        (72, "20db17ec0c49ebc4dc4bd4e5846fb7d387760f280001926a115ebb71c0e7be3e"),
    ("tradeoff", "small", 2):
        (72, "20db17ec0c49ebc4dc4bd4e5846fb7d387760f280001926a115ebb71c0e7be3e"),
    ("tradeoff", "paper", None):
        (90, "3c94486280a5c808ca2981e70e2e2702bb5cc89965c14ee725644b82e0e780bb"),
    ("tradeoff", "paper", 2):
        (180, "92598bf3d788539c67f82623e8f0e427ed2a745a41e1f0251a6908f3ba0c6f0a"),
    ("spikes", "tiny", None):
        (24, "0c03fa85c2578e87bf2dbfb4fa15dc2377bce8a07710752aa88900ade94a5234"),
    ("spikes", "tiny", 2):
        (16, "e3dc3730a813f8d0af6f91bfd52d4d0560ff5f47994d88d8cfc93ecccd572268"),
    ("spikes", "cpu", None):
        (6, "a7c4c23ef5a68121ff3d99be477c91543972ef11dc6dabc3d9f1e8ccb5ab8600"),
    ("spikes", "cpu", 2):
        (2, "dfc9aef63876a88bb6db557a69944d1f16e9a3735899d2fe9e6f1c7a98b57c70"),
    ("spikes", "small", None):
        (24, "b1e0ff6f4e17cc67e3b9a50ad2b8d469b1e2216e22a5d5a6cfca7306c6a651fb"),
    ("spikes", "small", 2):
        (16, "494929e75f0b76485263aa446bdc081e5c293fc1fe8065f9c1a1340357684fd8"),
    ("spikes", "gpu", None):
        (6, "0b4a1f215cf02a7d5e9c5d3e77b65b8603e20238dd3919e70bf483eb5a3778f3"),
    ("spikes", "gpu", 2):
        (12, "ea1d5d7e382c0882368cf287ce91c9b2e2cc453346b0f75d1e47b6b9f7ae077d"),
    ("spikes", "paper", None):
        (40, "46e15a8c6ae0d5f39e060bdc979bec230f721cccf1f01841bd786c4b301a6b98"),
    ("spikes", "paper", 2):
        (16, "373ac4ca4ca900d703a2f46f0a31d7998ad4d83081c47a96b2c5939a1756369a"),
    ("optimizers", "tiny", None):
        (6, "ae6faab12c90dbe4a51b3cac92be1a646dcb8ab803429dd468bbb0d1ccd4c948"),
    ("optimizers", "tiny", 2):
        (6, "ae6faab12c90dbe4a51b3cac92be1a646dcb8ab803429dd468bbb0d1ccd4c948"),
    ("optimizers", "cpu", None):
        (9, "d94685c925f4893d076e67050e3293238e8feecabf2ec975027fbcf1510cd5ff"),
    ("optimizers", "cpu", 2):
        (6, "e5d59d674282f96e27d749aa4def198a7ce34834bc364b9c1a2a9e6a33d01053"),
}


def test_every_preset_and_scale_is_pinned():
    want = {(n, s, seeds) for n, p in PRESETS.items() for s in p.scales for seeds in (None, 2)}
    assert set(GRID_DIGESTS) == want


@pytest.mark.parametrize("key", sorted(GRID_DIGESTS, key=str))
def test_grid_is_unchanged(key):
    assert grid_digest(*key) == GRID_DIGESTS[key]


def _records() -> list[dict]:
    return [json.loads(line) for path in sorted(RECORDS.glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def test_checked_in_records_are_runs_of_the_current_grids():
    """Every record of a preset's current version is a run of its cpu grid with the same
    tags; a record of an older version (a rerun in progress) still rebuilds to its id."""
    records = _records()
    grids = {n: {s.run_id: s for s in p.grid("cpu")} for n, p in PRESETS.items()
             if "cpu" in p.scales}
    current = [r for r in records if r["version"] == PRESETS[r["preset"]].version]
    assert len(current) >= 250  # the drift, pins, tradeoff … records (339 in all)
    for r in current:
        spec = grids[r["preset"]].get(r["run_id"])
        assert spec is not None, r["run_id"]
        assert spec.tag_dict == r["tags"] and spec.label == r["label"], r["run_id"]
    for r in records:
        assert spec_from_dict(r).run_id == r["run_id"]


@pytest.mark.parametrize("name, run_id", [
    ("drift", "drift_gpt_relu_embedded_adamw_s0-8a3d944f98"),
    ("first_step", "first_step_gelu_n1024_s0-e2823636ce"),
    ("optimizers", "optimizers_adamw_s0-1bddf8f4d0"),
    ("pins", "pins_gpt_relu_embedded_adamw_downstream-mean_s0-2eaead113c"),
    ("sparsity_law", "sparsity_law_lr0.001_s0-c9c863cd36"),
    ("spikes", "spikes_gpt_relu2_embedded_adamw_s0-e342d43ccc"),
    ("tradeoff", "tradeoff_clipped_relu2-1_lr0.003_wd0_g1_d3_l10_s0-65a4f8e6a5"),
])
def test_literal_run_ids_from_the_records(name, run_id):
    assert run_id in {s.run_id for s in get_preset(name).grid("cpu")}
