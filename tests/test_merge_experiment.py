"""The merging experiment: its config, width sweeps, and a reduced run on the offline MNIST and Fashion-MNIST images."""

from __future__ import annotations

import json

import pytest

from latentalign.experiments.merging import build_family, expand_sweeps
from latentalign.experiments.runner import load_config, run_experiment


def test_config_loads_and_states_its_differences():
    config, reduced = load_config("merging"), load_config("merging", reduced=True)
    assert config["runner"] == "latentalign.experiments.merging:run"
    for key in ("citation", "table", "differences", "sources", "verified", "claims"):
        assert config["paper"].get(key), key
    assert {f["kind"] for f in config["setup"]["families"]} == {"mlp", "cnn", "resnet"}
    assert reduced["reduced_run"] and reduced["setup"]["families"] != config["setup"]["families"]
    # the pass rules are part of the config, fixed before the run
    for key in ("max_barrier_fraction", "sweep_max_spearman", "repair_min_gain", "cycle_min_gain_points"):
        assert isinstance(config["setup"][key], float), key
    mlp = next(f for f in config["setup"]["families"] if f["kind"] == "mlp")
    assert mlp["hidden"] == [512, 512, 512] and mlp["n_models"] == 3 and mlp["merge_all"]


def test_build_family_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match=r"family kind must be 'mlp', 'cnn' or 'resnet'; received 'rnn'"):
        build_family({"kind": "rnn"})


def test_expand_sweeps_reuses_a_family_of_the_same_name_and_settings():
    family = {"name": "MLP 2x16", "kind": "mlp", "hidden": [16, 16], "dataset": "mnist", "n_models": 3}
    sweep = {"name": "width", "family_name": "MLP 2x{width}", "kind": "mlp", "hidden_layers": 2, "dataset": "mnist"}
    families, sweeps = expand_sweeps({"families": [family], "sweeps": [{**sweep, "widths": [8, 16]}]})
    assert [f["name"] for f in families] == ["MLP 2x16", "MLP 2x8"]
    assert families[0] == family  # the family keeps its own settings (3 models, every method)
    assert families[1]["methods"] == ["naive", "weight matching"] and families[1]["checks"] is False
    assert sweeps == [{"name": "width", "widths": [8, 16], "families": ["MLP 2x8", "MLP 2x16"]}]
    with pytest.raises(ValueError, match="names its width 16 'MLP 2x16', a family with other settings"):
        expand_sweeps({"families": [{**family, "dataset": "fashion_mnist"}], "sweeps": [{**sweep, "widths": [16]}]})
    with pytest.raises(ValueError, match="a width sweep's kind must be 'mlp' or 'resnet'; received 'cnn'"):
        expand_sweeps({"families": [], "sweeps": [{**sweep, "kind": "cnn", "widths": [16]}]})


@pytest.mark.slow
def test_reduced_run_matching_lowers_the_mlp_barrier(tmp_path):
    result, page = run_experiment("merging", reduced=True, out_dir=tmp_path)
    methods = {(r["family"], r["method"]) for r in result.rows}
    assert ("VGG-like 8-16 (Fashion-MNIST)", "weight matching + BN reset") in methods
    mlp = [r for r in result.rows if r["family"] == "MLP 2x64 (MNIST)"]
    assert {r["pair"] for r in mlp} == {"0-1", "0-2", "1-2", "0-1-2"}  # three models: every pair, then all three
    by_pair = {(r["pair"], r["method"]): r for r in mlp}
    for pair in ("0-1", "0-2", "1-2"):
        # two independently trained MLPs: matching their units must lower the loss barrier of the linear path
        naive = by_pair[(pair, "naive")]["loss_barrier"]
        assert by_pair[(pair, "weight matching")]["loss_barrier"] < naive
        assert by_pair[(pair, "activation matching")]["loss_barrier"] < naive
        assert by_pair[(pair, "weight matching")]["loss_barrier_repair"] >= 0
    merged = [r for r in mlp if r["pair"] == "0-1-2"]
    assert len(merged) == 2 and all(0 <= r["acc_merged"] <= 100 for r in merged)
    barrier_checks = [c for c in result.checks if c.claim.startswith("MLP 2x64") and "cuts the loss barrier" in c.claim]
    assert len(barrier_checks) == 2 and all(c.passed for c in barrier_checks)
    assert any("cycle-consistent" in c.claim for c in result.checks)
    record = json.loads(page.with_suffix(".json").read_text())
    assert record["details"]["families"]["MLP 2x64 (MNIST)"]["weight_matching_sweeps"] >= 1
    (sweep,) = record["details"]["sweeps"]
    assert sweep["widths"] == [16, 64] and len(sweep["matched"]) == len(sweep["repaired"]) == 2
    assert (tmp_path / "merging.png").is_file() and (tmp_path / "merging_width.png").is_file()
