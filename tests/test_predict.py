"""`predict` gives exactly what evaluation scored: same preprocessing, same network call, same
post-processing, for a checkpoint in PyTorch and for the INT8 model in ONNX Runtime."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pipeline_lib.config import defaults
from pipeline_lib.errors import UserError
from pipeline_lib.export.runtime import OrtModel
from pipeline_lib.io import read_json
from pipeline_lib.predict import predict
from pipeline_lib.tasks import get_task, load_model

pytestmark = pytest.mark.e2e  # uses the tiny snakemake run and the CLI

EVAL_BATCH = 8  # config/test.yaml's evaluate.batch_size: the same batches, so the same numbers


def _val(run: Path):
    manifest = read_json(run / "results/data/dataset.json")
    folder = Path(manifest["splits"]["val"][0]["image"]).parent
    ids = {str(Path(it["image"])): it["image_id"] for it in manifest["splits"]["val"]}
    return manifest, folder, ids


def _evaluation_predictions(model, manifest, tmp_path) -> list[dict]:
    task = get_task("detection")
    loader = task.loader(manifest, "val", train=False, imgsz=64, batch_size=EVAL_BATCH, workers=0, seed=0)
    task.evaluate(model, loader, torch.device("cpu"), defaults("detection")["evaluate"], manifest, tmp_path / "e.json")
    return read_json(tmp_path / "e.json")


def _as_evaluation(result: dict, ids: dict) -> list[dict]:
    return [{"image_id": ids[record["image"]], **d} for record in result["images"] for d in record["predictions"]]


@pytest.mark.parametrize("model_path", ["results/pruned_finetuned.pt", "results/export/pruned_finetuned.int8.onnx"])
def test_predict_equals_the_evaluation_path(tiny_run, tmp_path, monkeypatch, model_path):
    monkeypatch.chdir(tiny_run)  # the manifest's image paths are relative to the run folder
    manifest, folder, ids = _val(tiny_run)
    assert sorted(ids) == [str(p) for p in sorted(folder.iterdir())], "the val folder holds exactly the val split"
    model = OrtModel(model_path) if model_path.endswith(".onnx") else load_model(model_path).model
    expected = _evaluation_predictions(model, manifest, tmp_path)
    result = predict(model_path=model_path, source=folder, out_dir=tmp_path / "pred", batch_size=EVAL_BATCH,
                     eval_threshold=True)
    assert expected, "the tiny model found nothing: the comparison would be empty"
    assert _as_evaluation(result, ids) == expected
    assert result["family"] == "detection" and result["names"] == manifest["names"]
    if model_path.endswith(".pt"):  # the stored predictions of the pipeline's own evaluate rule, too
        assert _as_evaluation(result, ids) == read_json("results/metrics/pruned_finetuned.predictions.json")


def test_predict_cli_draws_boxes_from_the_int8_model(tiny_run, tmp_path):
    manifest, folder, _ = _val(tiny_run)
    image = tiny_run / manifest["splits"]["val"][0]["image"]
    proc = subprocess.run([sys.executable, "-m", "pipeline_lib", "predict", "--model",
                           str(tiny_run / "results/export/pruned_finetuned.int8.onnx"), "--source", str(image),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out/predictions.json").read_text())
    (record,) = result["images"]
    drawn = Path(record["drawn"])
    assert drawn == tmp_path / "out" / image.name
    with Image.open(drawn) as im, Image.open(image) as src:  # a small image is drawn enlarged, labels legible
        scale = im.size[0] // src.size[0]
        assert scale * src.size[0] >= 320 and im.size == (scale * src.size[0], scale * src.size[1])
    assert all(set(d) == {"category_id", "score", "bbox"} for d in record["predictions"])
    assert all(d["score"] >= 0.25 for d in record["predictions"]), "predict keeps a deployed detector's boxes"


def test_predict_without_drawing_writes_json_only(tiny_run, tmp_path, monkeypatch):
    """A family that draws nothing (the base default) still gets its predictions written."""
    monkeypatch.chdir(tiny_run)
    _, folder, _ = _val(tiny_run)
    monkeypatch.setattr(type(get_task("detection")), "draw", lambda self, *a, **k: False)
    result = predict(model_path="results/pruned.pt", source=folder, out_dir=tmp_path / "p")
    assert result["images"] and all("drawn" not in r for r in result["images"])
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["predictions.json"]


def test_reid_predict_writes_the_embeddings_evaluation_ranks_by(tmp_path):
    """ReID: one embedding per crop (nothing drawn), equal to what evaluate's distance matrix is built from."""
    from pipeline_lib.checkpoint import save_checkpoint
    from pipeline_lib.config import defaults as family_defaults
    from pipeline_lib.tasks.reid.synthetic import generate_market

    task = get_task("reid")
    cfg = family_defaults("reid")
    manifest = task.prepare_dataset({"path": str(generate_market(tmp_path / "m", n_train_ids=4, n_test_ids=3,
                                                                   height=64, seed=0, difficulty=0.3)),
                                     "synthetic": {}}, tmp_path, 0)
    arch = task.arch({**cfg["model"], "name": "resnet18"}, manifest)
    model = task.build_model(arch).eval()
    save_checkpoint(tmp_path / "m.pt", model, arch, {"stage": "baseline", "imgsz": [32, 16], "names": manifest["names"]})
    loader = task.loader(manifest, "val", train=False, imgsz=[32, 16], batch_size=4, workers=0, seed=0)
    expected = {}
    with torch.no_grad():
        for batch in loader:
            for i, row in zip(batch["index"].tolist(), model(batch["images"]).tolist()):
                expected[loader.dataset.items[i]["image"]] = row
    query = manifest["splits"]["query"][0]["image"]
    result = predict(model_path=tmp_path / "m.pt", source=query, out_dir=tmp_path / "out", batch_size=4)
    (record,) = result["images"]
    assert record["predictions"]["embedding"] == pytest.approx(expected[query], abs=1e-5)
    assert "drawn" not in record and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.json"]


def test_a_16_bit_image_is_refused_in_one_line_before_any_model_is_read(tmp_path):
    import numpy as np

    image = tmp_path / "photos/depth.png"
    image.parent.mkdir()
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(image)  # 61% grey: white once clipped to 8 bits
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read: the images are checked first")
    with pytest.raises(UserError, match=rf"^{image}: a I;16\w? image \(16-bit or float\); slimflow reads 8-bit"):
        predict(model_path=model, source=image.parent, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
