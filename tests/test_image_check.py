"""The pre-run image check (`preflight.check_image`, also on `predict`'s path): a JPEG must reach
its end marker, walked by its segments, whatever follows it."""
import io

import pytest
from PIL import Image

from pipeline_lib.errors import UserError
from pipeline_lib.preflight import check_image


def _jpeg(**save) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((96, 64), 60).convert("RGB").save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("save", [{}, {"progressive": True}], ids=["baseline", "progressive"])
def test_a_valid_jpeg_with_100_kib_after_its_end_passes(tmp_path, save):
    path = tmp_path / "camera.jpg"
    path.write_bytes(_jpeg(**save) + bytes(100 << 10))  # a trailer longer than the 64 KiB once searched
    check_image(path)


@pytest.mark.parametrize("save", [{}, {"progressive": True}], ids=["baseline", "progressive"])
def test_a_jpeg_cut_inside_its_scan_is_refused(tmp_path, save):
    data = _jpeg(**save)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UserError, match=rf"^{path}: unreadable image"):
        check_image(path)


def test_an_end_marker_inside_a_segment_does_not_hide_a_cut_image(tmp_path):
    data = _jpeg()
    comment = b"\xff\xfe" + (2 + 4).to_bytes(2, "big") + b"\xff\xd9\xff\xd9"  # a COM segment holding two EOIs
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:2] + comment + data[2: len(data) // 2])
    with pytest.raises(UserError, match="unreadable image"):
        check_image(path)
