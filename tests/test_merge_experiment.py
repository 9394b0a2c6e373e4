"""The merging experiment: its config, and a reduced run on the offline MNIST and Fashion-MNIST images."""

from __future__ import annotations

import json

import pytest

from latentalign.experiments.merging import build_family
from latentalign.experiments.runner import load_config, run_experiment


def test_config_loads_and_states_its_differences():
    config, reduced = load_config("merging"), load_config("merging", reduced=True)
    assert config["runner"] == "latentalign.experiments.merging:run"
    for key in ("citation", "table", "differences", "sources", "verified", "claims"):
        assert config["paper"].get(key), key
    assert {f["kind"] for f in config["setup"]["families"]} == {"mlp", "cnn", "resnet"}
    assert reduced["reduced_run"] and reduced["setup"]["families"] != config["setup"]["families"]


def test_build_family_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match=r"family kind must be 'mlp', 'cnn' or 'resnet'; received 'rnn'"):
        build_family({"kind": "rnn"})


@pytest.mark.slow
def test_reduced_run_matching_lowers_the_mlp_barrier(tmp_path):
    result, page = run_experiment("merging", reduced=True, out_dir=tmp_path)
    methods = {(r["family"], r["method"]) for r in result.rows}
    assert ("VGG-like 8-16 (Fashion-MNIST)", "weight matching + BN reset") in methods
    mlp = {r["method"]: r for r in result.rows if r["family"].startswith("MLP")}
    # two independently trained MLPs: matching their units must lower the loss barrier of the linear path
    assert mlp["weight matching"]["loss_barrier"] < mlp["naive"]["loss_barrier"]
    assert mlp["activation matching"]["loss_barrier"] < mlp["naive"]["loss_barrier"]
    assert all(c.passed for c in result.checks if c.claim.startswith("MLP"))
    record = json.loads(page.with_suffix(".json").read_text())
    assert record["details"]["families"]["MLP 2x64 (MNIST)"]["weight_matching_sweeps"] >= 1
    assert (tmp_path / "merging.png").is_file()
