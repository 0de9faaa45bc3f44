"""Snakemake adapter for pipeline_lib.steps.train_stage."""
from pipeline_lib.runner import run_logged
from pipeline_lib.steps import StageSpec, train_stage

if __name__ == "__main__":
    spec = StageSpec(label=snakemake.params.label, train_cfg=snakemake.params.train, model_cfg=snakemake.params.model,
                     family=snakemake.params.task, validation=snakemake.params.validation, seed=snakemake.params.seed, device=snakemake.params.device,
                     manifest_path=snakemake.input.manifest, out_checkpoint=snakemake.output.checkpoint,
                     out_csv=snakemake.output.csv, workdir=snakemake.params.workdir,
                     init_checkpoint=snakemake.input.get("init"), out_adapter=snakemake.output.get("adapter"),
                     teacher_checkpoint=snakemake.input.get("teacher"))
    run_logged(snakemake.log[0], train_stage, spec=spec)
