"""Where every file of a run lives: the one place that spells a path under `results/`.

The workflow's rules, the step functions and `python -m pipeline_lib` all ask this module, so
adding or moving an artifact is one edit here.

    Artifact("", "baseline").checkpoint              # results/baseline.pt
    Artifact("sweep/r0.5/", "pruned").metrics        # results/sweep/r0.5/metrics/pruned.json
    Artifact("{lineage}", "{stage}").checkpoint      # a rule's pattern: results/{lineage}{stage}.pt
    Results("runs/a/results").summary_csv            # runs/a/results/summary.csv

An artifact is a checkpoint of the chain: a `stage` (baseline, sparse, pruned, pruned_finetuned)
in a `lineage` (the main chain "", an earlier iteration "iter/2/", a sweep point "sweep/r0.3/";
see `pipeline_lib.chain`). Exported models exist for the main chain's artifacts only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["EVALUATED", "DEPLOYED", "RESULTS", "Artifact", "Exported", "DataFolder", "Results", "onnx_prefix"]

# Every artifact a chain writes, in chain order (each is evaluated: results/{lineage}metrics/{stage}.json).
EVALUATED = ("baseline", "sparse", "pruned", "pruned_finetuned")
# The artifact that is deployed: its ONNX metrics are results/metrics/onnx_{precision}.json.
DEPLOYED = "pruned_finetuned"
RESULTS = "results"  # the results folder, relative to the run's working directory


@dataclass(frozen=True)
class Artifact:
    """The files of one artifact: `lineage` and `stage` are values, or "{lineage}" and "{stage}"
    for a rule's output patterns."""

    lineage: str
    stage: str
    results: str = RESULTS

    def _under(self, name: str) -> str:
        return Results(self.results).path(f"{self.lineage}{name}")

    @property
    def label(self) -> str:
        """How logs, metrics and the checkpoint's meta name it: sweep/r0.5/pruned_finetuned."""
        return f"{self.lineage}{self.stage}"

    @property
    def checkpoint(self) -> str:
        return self._under(f"{self.stage}.pt")

    @property
    def adapter(self) -> str:
        """A LoRA stage's adapter alone, beside its merged checkpoint."""
        return self._under(f"{self.stage}.lora.pt")

    @property
    def train_csv(self) -> str:
        return self._under(f"train/{self.stage}.csv")

    @property
    def workdir(self) -> str:
        """The resume state (last.pt, best.pt) while the stage trains."""
        return self._under(f"work/{self.stage}")

    @property
    def metrics(self) -> str:
        return self._under(f"metrics/{self.stage}.json")

    @property
    def predictions(self) -> str:
        return self._under(f"metrics/{self.stage}.predictions.json")

    @property
    def prune_report(self) -> str:
        """prune.json of the lineage (written with its pruned checkpoint)."""
        return self._under("prune.json")

    @property
    def prune_search(self) -> str:
        """The target search's outcome, reused by reruns (beside prune.json; not a Snakemake output)."""
        return self._under("prune_search.json")

    def log(self, rule: str) -> str:
        """The rule's log; a rule of the lineage as a whole (prune) has an artifact without a stage."""
        return self._under(f"logs/{rule}{self.stage and '-'}{self.stage}.log")

    def benchmark(self, rule: str) -> str:
        return self._under(f"benchmarks/{rule}{self.stage and '-'}{self.stage}.tsv")

    # Deployment files: main-chain artifacts only (see Exported).

    def onnx(self, precision: str = "fp32") -> str:
        return Results(self.results).path(f"export/{self.stage}" + (".int8" if precision == "int8" else "") + ".onnx")

    def onnx_report(self, precision: str = "fp32") -> str:
        return self.onnx(precision).removesuffix(".onnx") + ".json"

    def onnx_metrics(self, precision: str) -> str:
        return Exported(onnx_prefix(self.stage), precision, self.results).metrics

    @property
    def torch_latency(self) -> str:
        return Results(self.results).path(f"latency/{self.stage}.torch.json")


def onnx_prefix(stage: str) -> str:
    """The file-name prefix of a stage's ONNX metrics: "" for the deployed one, "<stage>." else."""
    return "" if stage == DEPLOYED else f"{stage}."


@dataclass(frozen=True)
class Exported:
    """A main-chain artifact exported in one precision, named as its metrics are: `prefix` is ""
    for the deployed artifact (metrics/onnx_int8.json), "<stage>." else (metrics/baseline.onnx_fp32.json)."""

    prefix: str
    precision: str  # fp32 or int8
    results: str = RESULTS

    @property
    def artifact(self) -> Artifact:
        return Artifact("", self.prefix.rstrip(".") or DEPLOYED, self.results)

    @property
    def onnx(self) -> str:
        return self.artifact.onnx(self.precision)

    @property
    def report(self) -> str:
        return self.artifact.onnx_report(self.precision)

    @property
    def metrics(self) -> str:
        return Results(self.results).path(f"metrics/{self.prefix}onnx_{self.precision}.json")

    def log(self, rule: str) -> str:
        return Results(self.results).log(f"{rule}-{self.prefix}{self.precision}")

    def benchmark(self, rule: str) -> str:
        return Results(self.results).benchmark(f"{rule}-{self.prefix}{self.precision}")


@dataclass(frozen=True)
class DataFolder:
    """A dataset's files under results/data/: `folder` is "" (the experiment's) or "finetune/"
    (stages.finetune.dataset)."""

    folder: str
    results: str = RESULTS

    def _under(self, name: str) -> str:
        return Results(self.results).path(f"data/{self.folder}{name}")

    @property
    def manifest(self) -> str:
        return self._under("dataset.json")

    @property
    def evaluator(self) -> str:
        """The family's own evaluator (diffusion's digit judge), trained on this data."""
        return self._under("evaluator.pt")

    @property
    def evaluator_report(self) -> str:
        return self._under("evaluator.json")

    def log(self, rule: str) -> str:
        return Results(self.results).log(f"{self.folder}{rule}")

    def benchmark(self, rule: str) -> str:
        return Results(self.results).benchmark(f"{self.folder}{rule}")


@dataclass(frozen=True)
class Results:
    """The run-level files of one results folder."""

    root: str = RESULTS

    def path(self, name: str) -> str:
        """A file or folder of the results folder: the one place a path under it is joined."""
        return f"{os.fspath(self.root)}/{name}"

    def log(self, name: str) -> str:
        return self.path(f"logs/{name}.log")

    def benchmark(self, name: str) -> str:
        return self.path(f"benchmarks/{name}.tsv")

    def plot(self, name: str) -> str:
        """results/plots/<name>.png, or a folder of plots for a name without a suffix ("evaluation", "samples")."""
        return self.path(f"plots/{name}")

    @property
    def summary_csv(self) -> str:
        return self.path("summary.csv")

    @property
    def summary_md(self) -> str:
        return self.path("summary.md")

    @property
    def provenance(self) -> str:
        return self.path("provenance.json")

    @property
    def report_page(self) -> str:
        """The HTML report's first page."""
        return self.path("report.rst")

    @property
    def mlruns(self) -> str:
        """The MLflow file store `train.loggers: [mlflow]` records every stage in."""
        return self.path("mlruns")

    @property
    def sweep_summary(self) -> str:
        return self.path("sweep/summary.csv")
