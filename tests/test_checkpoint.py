"""The checkpoint contract: weights_only loading, self-describing arch, clear failures."""

import pytest
import torch
from torch import nn

from pipeline_lib.checkpoint import FORMAT, load_checkpoint, match_widths, save_checkpoint
from pipeline_lib.tasks import build_from_checkpoint
from pipeline_lib.errors import UserError
from pipeline_lib.tasks import get_task

ARCH = {"family": "detection", "name": "yolov5n", "kwargs": {"nc": 3, "scale": "n", "anchors": None, "shortcut": True}}


def test_round_trip_weights_only_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = get_task("detection").build_model(ARCH).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, ARCH, {"stage": "baseline"})
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["format"] == FORMAT and raw["meta"]["versions"]["torch"] == torch.__version__
    rebuilt = build_from_checkpoint(load_checkpoint(path, family="detection")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_match_widths_rebuilds_a_narrower_network():
    def net(c):
        return nn.Sequential(nn.Conv2d(3, c, 3), nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, groups=c),
                             nn.BatchNorm2d(c), nn.Flatten(), nn.Linear(c * 4, 4))
    small = net(5)
    big = match_widths(net(8), small.state_dict())
    big.load_state_dict(small.state_dict())
    assert big[2].groups == 5 and big[1].num_features == 5 and big[5].in_features == 20
    x = torch.rand(1, 3, 6, 6)
    assert torch.equal(small.eval()(x), big.eval()(x))


@pytest.mark.parametrize("payload, message", [
    (b"not a checkpoint at all", "truncated or corrupted"),
    (None, "truncated or corrupted"),  # a real checkpoint cut in half
])
def test_damaged_files_fail_with_the_file_name(tmp_path, payload, message):
    path = tmp_path / "bad.pt"
    if payload is None:
        save_checkpoint(path, nn.Linear(2, 2), ARCH, {})
        payload = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(payload)
    with pytest.raises(UserError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


class _Exploit:
    def __reduce__(self):
        return (print, ("this would have run code",))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _Exploit()}, path)
    with pytest.raises(UserError, match="pickled objects"):
        load_checkpoint(path)
    assert "would have run code" not in capsys.readouterr().out


def test_wrong_family_and_missing_keys(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, nn.Linear(2, 2), {**ARCH, "family": "reid"}, {})
    with pytest.raises(UserError, match="'reid' model but the config's task is 'detection'"):
        load_checkpoint(path, family="detection")
    torch.save({"format": FORMAT, "arch": ARCH}, path)
    with pytest.raises(UserError, match="lacks key"):
        load_checkpoint(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(UserError, match="not a slimflow checkpoint"):
        load_checkpoint(path)


def test_published_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from pipeline_lib.io import write_text

    write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask
