"""The exported models' checks before any job (the preflight): a damaged ONNX file under
results/export, or an `export.int8_float_layers` name that is no layer of the FP32 model, would
otherwise fail quantize_int8 or evaluate_onnx after Snakemake had deleted their previous outputs.

    check_exported(Path("results"), config["export"], passed)   # UserError naming the file

`passed` remembers (size, mtime) of what passed, so onnx is imported only for a new or changed file.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..fingerprint import file_stamp
from ..layout import DEPLOYED, Artifact

__all__ = ["check_exported"]


def _load(path: Path):
    """The ONNX model at `path` with slimflow's metadata (UserError naming it otherwise)."""
    import onnx

    remedy = "delete it and rerun (snakemake exports it again)"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UserError(f"{path}: not a readable ONNX model ({type(e).__name__}); {remedy}") from None
    keys = {p.key for p in model.metadata_props}
    if not model.graph.node or "slimflow.family" not in keys:
        raise UserError(f"{path}: not an ONNX model exported by slimflow (no graph or no slimflow metadata); {remedy}")
    return model


def check_exported(results: Path, export_cfg: dict, passed: dict) -> None:
    """Every *.onnx under results/export loads with slimflow's metadata; a list of
    `int8_float_layers` names layers of the deployed FP32 model, when that exists."""
    layers = export_cfg["int8_float_layers"]
    fp32 = Path(Artifact("", DEPLOYED, str(results)).onnx())
    for path in sorted((results / "export").glob("*.onnx")):
        stamp = file_stamp(path)
        wanted = [*stamp, layers] if path == fp32 and isinstance(layers, list) and layers else stamp
        if stamp is None or passed.get(str(path)) == wanted:
            continue
        model = _load(path)
        if wanted is not stamp:
            from .quantize import weighted_layers

            known = weighted_layers(model)
            unknown = [name for name in layers if name not in known]
            if unknown:
                raise UserError(f"export.int8_float_layers: {unknown[0]!r} is not a layer of {path} (its layers: "
                                f"{', '.join(list(known)[:4])}, ... {len(known)} in all)")
        passed[str(path)] = wanted
    for name in [p for p in passed if not Path(p).exists()]:
        del passed[name]
