"""Hostile or unusual weights files (built byte by byte by benchmarks/hostile_weights.py): bounded
reads (a stride-0 view, a compressed member, sizes that disagree with the archive), pickle protocols
torch's weights_only unpickler cannot read, and the global a code-running pickle names, whatever
its opcode."""
import importlib.util
import os
import re
from copy import deepcopy

import pytest
import torch

from pipeline_lib.config import defaults
from pipeline_lib.errors import UserError
from pipeline_lib.tasks import get_task
from pipeline_lib.torchfile import load_plain, load_sealed, save_sealed
from pipeline_lib.torchpickle import read_torch_pickle
from pipeline_lib.weights import import_weights

from conftest import REPO
from yolov5_checkpoints import yolov5_model

_spec = importlib.util.spec_from_file_location("hostile_weights", REPO / "benchmarks/hostile_weights.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)

READERS = [pytest.param(load_plain, id="torch.load"), pytest.param(read_torch_pickle, id="restricted")]


@pytest.mark.parametrize("read", READERS)
def test_a_stride_0_view_is_refused_before_it_is_copied_out(tmp_path, read):
    path = tmp_path / "stride0.pt"
    torch.save({"w": torch.zeros(1).expand(30000, 30000)}, path)  # 1 stored float, 3.6 GB as a copy
    assert path.stat().st_size < 2000
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: .*tensor .*\(30000, 30000\).* takes 3\.60 GB"):
        read(path)


@pytest.mark.parametrize("read", READERS)
def test_containers_repeated_inside_each_other_are_refused_before_a_walk_multiplies_them(tmp_path, read):
    nested = [torch.zeros(1)]
    for _ in range(40):
        nested = [nested, nested]  # 2 KB on disk (the pickle's memo), 2^40 values to a walk
    torch.save({"w": nested}, tmp_path / "laughs.pt")
    with pytest.raises(UserError, match=r"laughs\.pt: more than 1,000,000 values in its containers"):
        read(tmp_path / "laughs.pt")


@pytest.mark.parametrize("read", READERS)
def test_a_compressed_member_is_checked_by_its_header_before_it_is_inflated(tmp_path, read):
    numel = 19 << 22  # 304 MiB of zeros in a file of 1.3 MB
    small = hostile.tensor_file(tmp_path / "bomb.pt", hostile.Tensor(numel, (numel,), (1,)), data=bytes(4))
    path = hostile.deflated(small, numel)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: member archive/data/0 unpacks to 0\.32 GB"
                                        r" from \d+ bytes: more than the"):
        read(path)


def test_the_budget_is_configurable_for_a_file_you_trust(tmp_path, monkeypatch):
    path = tmp_path / "big.pt"
    torch.save({"w": torch.zeros(1).expand(1000, 1000)}, path)  # 4 MB as a copy
    monkeypatch.setenv("SLIMFLOW_WEIGHTS_BUDGET_MB", "1")
    with pytest.raises(UserError, match="tensor w of shape .1000, 1000. takes 4.0 MB.*SLIMFLOW_WEIGHTS_BUDGET_MB"):
        load_plain(path)
    monkeypatch.setenv("SLIMFLOW_WEIGHTS_BUDGET_MB", "8")
    assert load_plain(path)["w"].shape == (1000, 1000)


@pytest.mark.parametrize("tensor, data, words", [
    (hostile.Tensor(1000, (1000,), (1,)), b"\0" * 8, "the pickle declares 4000 bytes, its archive member holds 8"),
    (hostile.Tensor(4, (3,), (2,), offset=1), b"\0" * 16, r"strides \(2,\) from offset 1 reach outside its storage"),
    (hostile.Tensor(4, (2,), (-1,), offset=1), b"\0" * 16, "reach outside its storage"),
])
def test_sizes_that_disagree_with_the_archive_are_refused(tmp_path, tensor, data, words):
    path = hostile.tensor_file(tmp_path / "forged.pt", tensor, data=data)
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: .*{words}"):
        read_torch_pickle(path)


def test_a_yolov5_checkpoint_saved_with_pickle_protocol_4_imports(tmp_path, capfd):
    path = tmp_path / "best.pt"
    torch.save({"epoch": -1, "model": deepcopy(yolov5_model(seed=0)).half(), "ema": None, "opt": {}}, path,
               pickle_protocol=4)
    imported = import_weights(get_task("detection"), path, defaults("detection")["model"], None)
    assert (imported.report.transferred, imported.report.total) == (349, 349)
    assert "Warning" not in capfd.readouterr().err  # torch's protocol warning is not passed on


def test_a_sealed_file_saved_again_with_pickle_protocol_5_loads_and_verifies(tmp_path):
    save_sealed(tmp_path / "p2.pt", {"w": torch.arange(6.0).reshape(2, 3)[:, 1:], "n": 3, "shape": torch.Size([2])})
    torch.save(torch.load(tmp_path / "p2.pt", weights_only=True), tmp_path / "p5.pt", pickle_protocol=5)
    loaded = load_sealed(tmp_path / "p5.pt")  # its checksum holds: the restricted reader gives the same values
    assert loaded["n"] == 3 and torch.equal(loaded["w"], torch.tensor([[1.0, 2.0], [4.0, 5.0]]))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL, STACK_GLOBAL
def test_a_code_running_pickle_names_its_global_for_every_opcode(tmp_path, protocol):
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, path, pickle_protocol=protocol)
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: not a loadable checkpoint: contains pickled "
                                        r"objects that could run code \(posix\.system\)"):
        load_sealed(path)
    assert not marker.exists()


def test_an_inst_opcode_names_its_global(tmp_path):
    marker = tmp_path / "ran"
    path = hostile.archive(tmp_path / "inst.pt", f"(S'touch {marker}'\nios\nsystem\n.".encode())  # protocol 0's INST
    with pytest.raises(UserError, match=r"could run code \(os\.system\)"):
        load_sealed(path)
    assert not marker.exists()


class _Print:
    def __reduce__(self):
        return print, ("ran",)


@pytest.mark.parametrize("family", ["pose", "reid", "detection"])
def test_refusals_carry_no_terminal_escape_codes(tmp_path, family):
    path = tmp_path / "evil.pt"  # torch words a global outside its blocklist with "\033[1m...\033[0m"
    torch.save({"w": torch.zeros(2), "x": _Print()}, path)
    with pytest.raises(UserError) as info:
        import_weights(get_task(family), path, defaults(family)["model"], None)
    assert "builtins.print" in str(info.value) and "\x1b" not in str(info.value)


def test_the_pre_run_check_sees_weights_swapped_with_size_and_mtime_kept(tmp_path):
    from pipeline_lib.weights import check_weights

    from yolov5_checkpoints import save_yolov5

    path = save_yolov5(tmp_path / "best.pt", yolov5_model(seed=0))
    config, cache = {"task": "detection", "model": {**defaults("detection")["model"], "weights": str(path)}}, {}
    check_weights(config, cache)  # passes and is remembered
    stat, good = path.stat(), path.read_bytes()
    path.write_bytes(good[:-22] + bytes(22))  # its zip directory's end record gone: same size, unreadable
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: not a torch.save zip archive"):
        check_weights(config, cache)


def test_a_message_quoting_terminal_escape_codes_prints_without_them():
    assert str(UserError("best.pt: (\x1b[1mdo those steps\x1b[0m only)")) == "best.pt: (do those steps only)"


def test_a_yolov5_best_pt_kept_under_results_and_named_in_model_weights_passes_the_pre_run_check(tmp_path, monkeypatch):
    from pipeline_lib.config import load_config
    from pipeline_lib.preflight import preflight

    from yolov5_checkpoints import save_yolov5

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    best = save_yolov5(tmp_path / "results/best.pt", yolov5_model(seed=0))  # a whole pickled model: code to torch
    config = load_config(REPO / "config/test.yaml", {"model": {"weights": "results/best.pt"}})
    preflight(config, "results", "cache.json")  # read by the safe importer, not refused as a checkpoint
    (tmp_path / "results/copy.pt").write_bytes(best.read_bytes())  # the same file, not named in model.weights
    with pytest.raises(UserError, match=r"^results/copy\.pt: not a loadable checkpoint: contains pickled objects "
                                        r"that could run code \(models\.yolo\.DetectionModel\)"):
        preflight(config, "results", "cache.json")
