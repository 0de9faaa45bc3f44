#!/usr/bin/env bash
# An aarch64 Python with numpy and ONNX Runtime, to run under qemu-aarch64 (user-mode emulation):
#
#     benchmarks/arm_env.sh [DIR]      # default ${XDG_CACHE_HOME:-$HOME/.cache}/slimflow/arm64
#     DIR/python3 benchmarks/onnx_run.py model.onnx inputs.npz outputs.npz    # an aarch64 python3
#
# Debian bookworm's arm64 packages (debootstrap's first stage downloads minbase + python3; their
# files are unpacked with dpkg -x, no chroot and no second stage, so no binfmt registration is
# needed) and PyPI's manylinux aarch64 wheels of numpy and onnxruntime at the versions the
# calling python3 has, installed with pip --target. Needs root with apt-get (for qemu-user and
# debootstrap) and access to deb.debian.org and PyPI. Built once: a finished DIR holds .complete
# and is reused.
#
# DIR/python3 runs qemu-aarch64 (a Neoverse-N1 CPU) in a private mount namespace whose
# /proc/cpuinfo describes that CPU: qemu 7.2 passes the host's x86 /proc/cpuinfo through, and
# ONNX Runtime's CPU detection (pytorch/cpuinfo) crashes on it (a segmentation fault at import).
set -euo pipefail
dir=$(realpath -m "${1:-${XDG_CACHE_HOME:-$HOME/.cache}/slimflow/arm64}")
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi
if ! command -v qemu-aarch64 >/dev/null || ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user debootstrap >/dev/null
fi
rm -rf "$dir" && mkdir -p "$dir"
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$dir" \
    http://deb.debian.org/debian >"$dir.debootstrap.log"
for deb in "$dir"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$dir"; done
rm -rf "$dir"/debootstrap "$dir"/var/cache/apt "$dir"/var/lib/apt/lists "$dir"/usr/share/{doc,man,locale}
# The x86 side's versions: parity compares one ONNX Runtime release on two CPUs.
versions=$(python3 -c 'import numpy, onnxruntime; print(f"numpy=={numpy.__version__} onnxruntime=={onnxruntime.__version__}")')
# shellcheck disable=SC2086
pip install -q --no-deps --target "$dir/opt/site-packages" --platform manylinux2014_aarch64 \
    --platform manylinux_2_28_aarch64 --only-binary=:all: --python-version 3.11 --implementation cp $versions
printf 'processor\t: %s\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' \
    $(seq 0 $(($(nproc) - 1))) >"$dir/cpuinfo"
cat >"$dir/python3" <<WRAPPER
#!/bin/sh
# aarch64 python3 under qemu-aarch64 with numpy and onnxruntime (made by benchmarks/arm_env.sh)
exec unshare --mount sh -c 'mount --bind "\$0/cpuinfo" /proc/cpuinfo && QEMU_LD_PREFIX="\$0" QEMU_CPU=neoverse-n1 \\
    PYTHONPATH="\$0/opt/site-packages" exec qemu-aarch64 "\$0/usr/bin/python3" "\$@"' "$dir" "\$@"
WRAPPER
chmod +x "$dir/python3"
"$dir/python3" -c "import platform, numpy, onnxruntime; print(platform.machine(), numpy.__version__, onnxruntime.__version__)"
touch "$dir/.complete"
echo "$dir"
