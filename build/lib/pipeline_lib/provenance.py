"""Where every artifact came from: results/provenance.json and the report's provenance table.

    record = write_provenance(["results/baseline.pt", "results/sparse.pt", ...], "results/provenance.json")

Each checkpoint's meta already names its stage config hash, its parent's path and sha256, the
dataset checksum and the package versions; this gathers them, adds each file's own sha256 and
resolves parent hashes to the artifacts they belong to, so a chain can be audited from one file.

It is also checked against the files: every checkpoint passes its own checksum (load_checkpoint),
and a checkpoint's recorded parent hash must match the parent file there now — otherwise the
parent was replaced after the child was made (by hand, or by a run Snakemake was told to skip),
and the report would link numbers to the wrong weights. That is a UserError naming both files.
"""
from __future__ import annotations

import os

from .checkpoint import load_checkpoint
from .errors import UserError
from .io import sha256_file, write_json
from .versions import git_revision

__all__ = ["provenance", "write_provenance", "provenance_markdown"]


def provenance(checkpoints: list[str | os.PathLike]) -> dict:
    hashes = {str(p): sha256_file(p) for p in checkpoints}
    by_hash = {h: p for p, h in hashes.items()}
    artifacts = {}
    for path, digest in hashes.items():
        meta = load_checkpoint(path)["meta"]
        _check_parent(path, meta)
        artifacts[path] = {"sha256": digest, "stage": meta.get("stage"), "config_hash": meta.get("config_hash"),
                           "parent_sha256": meta.get("parent"),
                           "parent": by_hash.get(meta.get("parent")) or meta.get("parent_path"),
                           "dataset": meta.get("dataset"), "versions": meta.get("versions", {})}
        teacher = meta.get("distill")
        if teacher:  # distilled: the teacher's weights made this artifact as much as its parent's
            digest_t = teacher["teacher_sha256"]
            artifacts[path]["teacher"] = {"sha256": digest_t, "config_hash": teacher["teacher_config_hash"],
                                          "path": by_hash.get(digest_t) or teacher["teacher_path"]}
        adapter = (meta.get("lora") or {}).get("adapter")
        if adapter and os.path.isfile(adapter):  # a LoRA stage: the adapter alone, merged into this checkpoint
            artifacts[path]["adapter"] = {"path": adapter, "sha256": sha256_file(adapter)}
    return {"git": git_revision(), "artifacts": artifacts}


def _check_parent(path: str, meta: dict) -> None:
    """The parent file named in `meta` still holds the weights the checkpoint was made from."""
    parent, recorded = meta.get("parent_path"), meta.get("parent")
    if not parent or not recorded or not os.path.isfile(parent):
        return  # made from the config, by an older slimflow, or a parent since removed: nothing to compare
    if sha256_file(parent) != recorded:
        raise UserError(f"{path}: made from {parent} with sha256 {recorded[:12]}, but that file now has sha256 "
                        f"{sha256_file(parent)[:12]} (replaced after {path} was made); rebuild it from the current "
                        f"parent: snakemake --forcerun {path}")


def write_provenance(checkpoints: list[str | os.PathLike], out_json: str | os.PathLike) -> dict:
    record = provenance(checkpoints)
    write_json(out_json, record)
    return record


def provenance_markdown(record: dict) -> str:
    """The report's provenance table: each artifact, its hash, its parent and what made it."""
    lines = ["| artifact | sha256 | parent | config hash | dataset | slimflow (git) |", "|---|---|---|---|---|---|"]
    for path, a in record["artifacts"].items():
        parent = a["parent"] or (a["parent_sha256"] or "—")[:12]
        lines.append(f"| {path} | {a['sha256'][:12]} | {parent} | {a['config_hash']} | {a['dataset']} | "
                     f"{a['versions'].get('slimflow')} ({(a['versions'].get('git') or 'no git')[:12]}) |")
    return "\n".join(lines)
