"""prune.round_to: auto follows ONNX Runtime's CPU channel block, read from the CPU's flags."""
from pipeline_lib import chain
from pipeline_lib.config import defaults
from pipeline_lib.widths import cpu_flags, resolve_round_to, runtime_block


def test_the_block_is_16_with_avx512_and_8_without(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\n")
    assert {"avx2", "avx512f"} <= cpu_flags(cpuinfo)
    assert runtime_block(cpu_flags(cpuinfo)) == 16
    assert runtime_block({"fpu", "avx2", "fma"}) == 8
    assert runtime_block(cpu_flags(tmp_path / "absent")) == 8  # no /proc/cpuinfo (macOS): the AVX2 block
    assert resolve_round_to(4) == 4


def test_auto_is_resolved_into_the_prune_settings():
    cfg = defaults()
    assert cfg["prune"]["round_to"] == "auto"
    assert chain.prune_settings("", cfg["prune"])["round_to"] == runtime_block() == resolve_round_to("auto")
