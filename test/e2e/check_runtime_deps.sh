#!/usr/bin/env bash
# mantissa-run is carried to GPU machines that have only glibc, libstdc++, libgcc and
# the CUDA toolkit: its dynamic dependencies must be exactly those (and no MLIR/LLVM).
set -euo pipefail
bin=$1
deps=$(ldd "$bin" | awk '{print $1}')
bad=0
for d in $deps; do
  case "$d" in
    linux-vdso.so.*|/lib64/ld-linux-x86-64.so.*|libc.so.*|libm.so.*|libstdc++.so.*|libgcc_s.so.*|libpthread.so.*|libdl.so.*|librt.so.*) ;;
    libcudart.so.*|libcublas.so.*|libcublasLt.so.*|libnvrtc.so.*|libnvrtc-builtins.so.*|libcupti.so.*) ;;
    *) echo "FAIL: $bin depends on $d, which a GPU node does not have"; bad=1 ;;
  esac
done
# Capture nm's output before searching it: `nm | grep -q` under pipefail reports "no match" when grep
# exits at its first match and nm dies of SIGPIPE. -C demangles, so C++ names read mlir::/llvm::
# (the mangled _ZN4mlir... never contain "::"); mlirX/LLVMX are the C APIs.
if ! syms=$(nm -D --defined-only -C "$bin"); then
  echo "FAIL: nm -D $bin failed"; exit 1
fi
leaked=$(grep -E '(^|[^[:alnum:]_])(mlir|llvm)::| (mlir|LLVM)[A-Z]' <<<"$syms" | head -3 || true)
if [ -n "$leaked" ]; then
  echo "FAIL: $bin exports MLIR/LLVM symbols, e.g.:"; echo "$leaked"; bad=1
fi
[ $bad = 0 ] && echo "ok: $(echo $deps | wc -w) dependencies, all allowed"
exit $bad
