"""Snakemake adapter for pipeline_lib.steps.prepare_dataset."""
from pipeline_lib.runner import run_logged
from pipeline_lib.steps import prepare_dataset

if __name__ == "__main__":
    run_logged(snakemake.log[0], prepare_dataset, dataset_cfg=snakemake.params.dataset,
               family=snakemake.params.task, seed=snakemake.params.seed,
               manifest_path=snakemake.output.manifest)
