"""Snakemake adapter for pipeline_lib.steps.train_stage (its arguments: pipeline_lib.jobs).

The rule's resources may ask for several SLURM tasks (`mpi: srun`, `tasks`/`tasks_per_node`,
`nodes`: profiles/README.md); the step then starts one training process per task with srun.
"""
from pipeline_lib.steps import train_stage
from pipeline_lib.steps.train import launch_settings
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    resources = {key: snakemake.resources[key] for key in snakemake.resources.keys()}
    run_step(snakemake, train_stage, **launch_settings(resources))
