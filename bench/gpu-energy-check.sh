#!/usr/bin/env bash
# Issue 4 on a GPU: the energy checks (bench/energy_check.py) and the U-Net energy study
# (bench/unet_energy_study.py), with what bench/gpu-prepare.sh put into a folder:
#   bash .carry/gpu-energy-check.sh .carry results-dir [--no-study] [energy_check.py options]
# (--models mlp or --models unet: one model; on an H100 mlp alone took more than 9 minutes,
# most of it calibrating each of its 69 kernels, so a 10-minute call holds one model.)
set -uo pipefail
c=${1:-.carry}; out=${2:-gpu-results}; shift 2 || true
mkdir -p "$out"
. "$(dirname "$0")/gpu-env.sh" # unpacks $c, the CUDA libraries on LD_LIBRARY_PATH
export XDG_CACHE_HOME="$out/cache" # calibrations of this run only
fail=0
echo "libcupti (the CUPTI timeline): $(ls /usr/local/cuda/lib64/libcupti.so* /usr/local/cuda/extras/CUPTI/lib64/libcupti.so* 2>/dev/null | tr '\n' ' ')(LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
study=1
[ "${1:-}" = --no-study ] && { study=0; shift; }
python3 "$c/energy_check.py" --carry "$c" --out "$out/energy" "$@" 2>&1 | tee "$out/energy-check.txt"
[ "${PIPESTATUS[0]}" = 0 ] || fail=1
if [ $study = 1 ]; then
  python3 "$c/unet_energy_study.py" --carry "$c" --out "$out/unet-study" 2>&1 | tee "$out/unet-study.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || fail=1
fi
echo "== energy: $([ $fail = 0 ] && echo all passed || echo FAILURES)"
exit $fail
