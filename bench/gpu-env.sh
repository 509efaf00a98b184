# Sourced by the GPU scripts (gpu-check.sh, gpu-energy-check.sh, gpu-profile.sh,
# gpu-tune-check.sh) with $c the .carry folder of bench/gpu-prepare.sh: unpacks its
# binaries and plans once, and puts the CUDA toolkit's libraries on LD_LIBRARY_PATH,
# libcupti (the energy timeline, dlopened) included.
[ -d "$c/bin" ] || tar xzf "$c/payload.tgz" -C "$c" # packed by gpu-prepare.sh
# The toolkit's libraries; libcupti is in one of the two folders.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/extras/CUPTI/lib64:${LD_LIBRARY_PATH:-}
# Else PyTorch's nvidia-cuda-cupti wheel, if that is where this machine has it.
if ! ls /usr/local/cuda/lib64/libcupti.so.13 /usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13 >/dev/null 2>&1; then
  d=$(python3 -c 'import glob, site, os; h = [f for p in site.getsitepackages() for f in glob.glob(p + "/nvidia/**/libcupti.so.13", recursive=True)]; print(os.path.dirname(h[0]) if h else "")' 2>/dev/null)
  [ -n "$d" ] && export LD_LIBRARY_PATH=$d:$LD_LIBRARY_PATH
fi
