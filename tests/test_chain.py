"""Lineages of the slimming chain: which artifact each one starts from, and with which ratio."""
import re

import pytest

from pipeline_lib import chain
from pipeline_lib.config import defaults
from pipeline_lib.widths import runtime_block


def _config(**prune):
    cfg = defaults()
    cfg["prune"].update(prune)
    return cfg


def test_single_iteration_is_the_classic_chain():
    cfg = _config(ratio=0.6)
    assert chain.iteration_lineages(cfg["prune"]) == [""]
    assert chain.parent("", "baseline", cfg) is None
    assert chain.parent("", "sparse", cfg).checkpoint == "results/baseline.pt"
    assert chain.parent("", "pruned", cfg).checkpoint == "results/sparse.pt"
    assert chain.parent("", "pruned_finetuned", cfg).checkpoint == "results/pruned.pt"
    assert chain.prune_settings("", cfg["prune"]) == {"ratio": 0.6, "min_channels": 8, "round_to": runtime_block(),
                                                      "on_infeasible": "error"}
    cfg["stages"]["sparse"]["init"] = "scratch"
    assert chain.parent("", "sparse", cfg) is None


def test_iterations_continue_from_the_previous_slim_model():
    cfg = _config(iterations=3, ratio=[0.2, 0.3, 0.4])
    assert chain.iteration_lineages(cfg["prune"]) == ["iter/1/", "iter/2/", ""]
    assert chain.parent("iter/1/", "sparse", cfg).checkpoint == "results/baseline.pt"
    assert chain.parent("iter/2/", "sparse", cfg).checkpoint == "results/iter/1/pruned_finetuned.pt"
    assert chain.parent("", "sparse", cfg).checkpoint == "results/iter/2/pruned_finetuned.pt"
    assert chain.parent("iter/2/", "pruned", cfg).checkpoint == "results/iter/2/sparse.pt"
    assert [chain.prune_settings(lin, cfg["prune"])["ratio"] for lin in ("iter/1/", "iter/2/", "")] == [0.2, 0.3, 0.4]
    assert chain.prune_settings("iter/1/", _config(iterations=3, ratio=0.5)["prune"])["ratio"] == 0.5


def test_sweep_prunes_the_main_sparse_model_at_its_own_ratio():
    cfg = _config(sweep=[0.25, 0.5], ratio=0.7)
    lineages = chain.sweep_lineages(cfg["prune"])
    assert lineages == ["sweep/r0.25/", "sweep/r0.5/"]
    assert chain.parent("sweep/r0.25/", "pruned", cfg).checkpoint == "results/sparse.pt"
    assert chain.parent("sweep/r0.25/", "pruned_finetuned", cfg).checkpoint == "results/sweep/r0.25/pruned.pt"
    assert chain.prune_settings("sweep/r0.25/", cfg["prune"])["ratio"] == 0.25
    assert chain.sweep_point("sweep/r0.5/pruned_finetuned") == ("ratio", 0.5)
    # The main prune's settings do not mention the sweep, so adding a ratio never reruns it.
    assert chain.prune_settings("", cfg["prune"]) == chain.prune_settings("", _config(ratio=0.7)["prune"])


@pytest.mark.parametrize("lineage", ["", "iter/1/", "iter/12/", "sweep/r0.5/", "sweep/r0.125/"])
def test_lineage_pattern_accepts_every_lineage_it_names(lineage):
    import re

    assert re.fullmatch(chain.LINEAGE_PATTERN, lineage)
    assert not re.fullmatch(chain.LINEAGE_PATTERN, "iter/0/")


def test_a_target_replaces_the_ratio_and_only_a_timed_one_depends_on_threads_and_the_finetunes_activation():
    flops = _config(target={"flops": 0.4})["prune"]
    assert chain.prune_settings("", flops, threads=4, finetune_act="relu") == {
        "ratio": None, "target": {"flops": 0.4}, "min_channels": 8, "round_to": runtime_block(), "on_infeasible": "error"}
    timed = chain.prune_settings("", _config(target={"speedup": 2})["prune"], threads=4, finetune_act="relu")
    assert timed["threads"] == 4 and timed["finetune_act"] == "relu"
    assert chain.prune_settings("sweep/r0.25/", _config(target={"flops": 0.4}, sweep=[0.25])["prune"])["ratio"] == 0.25


def test_only_a_target_that_counts_int8_gets_the_quantize_settings_and_the_calibration_data():
    from pipeline_lib import jobs
    from pipeline_lib.layout import Artifact

    cfg = defaults()
    cfg["prune"]["target"] = {"speedup": 3.0}
    assert "manifest_path" not in jobs.step_args("prune", Artifact("", "pruned"), cfg)
    cfg["prune"]["target"] = {"speedup": 3.0, "int8": True}
    args = jobs.step_args("prune", Artifact("", "pruned"), cfg)
    assert args["prune_cfg"]["int8_quantize"]["calibration_images"] == cfg["export"]["calibration_images"]
    assert args["manifest_path"] == jobs.step_args("quantize_int8", Artifact("", "pruned_finetuned"), cfg)["manifest_path"]


def test_a_sweep_point_may_be_a_target_with_its_own_folder():
    cfg = _config(sweep=[0.3, {"flops": 0.4}, {"speedup": 2.5, "runs": 20}])
    assert chain.sweep_lineages(cfg["prune"]) == ["sweep/r0.3/", "sweep/flops0.4/", "sweep/speedup2.5/"]
    assert chain.prune_settings("sweep/flops0.4/", cfg["prune"])["target"] == {"flops": 0.4}
    assert chain.prune_settings("sweep/speedup2.5/", cfg["prune"], threads=2)["threads"] == 2
    assert chain.sweep_label("sweep/speedup2.5/pruned_finetuned") == "speedup=2.5"
    assert chain.sweep_point("sweep/latency_ms1.5/pruned") == ("latency_ms", 1.5)
    for lineage in chain.sweep_lineages(cfg["prune"]):
        assert re.fullmatch(chain.LINEAGE_PATTERN, lineage)
