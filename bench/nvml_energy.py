"""NVML's total-energy counter from Python (ctypes, no pynvml), sampled in a thread on
CLOCK_MONOTONIC (time.monotonic(): the clock of Mantissa's energy timeline, std::chrono::steady_clock).

    with Sampler() as s: ...work...
    s.joules_between(t0, t1)     # counter delta between the samples nearest t0 and t1
    s.windows(min_seconds=1.0)   # >= 1 s windows between observed counter changes (DESIGN.md)
    s.celsius_between(t0, t1)    # the GPU temperatures sampled in [t0, t1] (every ~100 ms)
    gpu_name(), device_kind()    # GPU 0's name; "h200" or "h100", the cost model's device for it
"""
import ctypes, subprocess, threading, time


def gpu_name():
    """GPU 0's name as nvidia-smi gives it ("NVIDIA H100 80GB HBM3"; "" without nvidia-smi)."""
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


def device_kind(name=None):
    """The cost model's device description (runtime/cost/devices) for a GPU name (default: GPU 0's):
    "h200" for an H200, else "h100"."""
    return "h200" if "H200" in (gpu_name() if name is None else name) else "h100"


class Nvml:
    def __init__(self, index=0):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        r = self.lib.nvmlInit_v2()
        if r:
            raise RuntimeError(f"nvmlInit_v2: {r}")
        self.dev = ctypes.c_void_p()
        r = self.lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(self.dev))
        if r:
            raise RuntimeError(f"nvmlDeviceGetHandleByIndex_v2: {r}")

    def millijoules(self):
        v = ctypes.c_ulonglong()
        r = self.lib.nvmlDeviceGetTotalEnergyConsumption(self.dev, ctypes.byref(v))
        if r:
            raise RuntimeError(f"nvmlDeviceGetTotalEnergyConsumption: {r}")
        return v.value

    def celsius(self):
        v = ctypes.c_uint()
        r = self.lib.nvmlDeviceGetTemperature(self.dev, 0, ctypes.byref(v))  # NVML_TEMPERATURE_GPU
        return None if r else v.value


class Sampler:
    """Polls the counter every `period` seconds: samples (t, joules)."""
    def __init__(self, period=0.005, index=0):
        self.nvml, self.period, self.samples, self.temps = Nvml(index), period, [], []
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            self.samples.append((t, self.nvml.millijoules() * 1e-3))
            if not self.temps or t - self.temps[-1][0] >= 0.1:
                c = self.nvml.celsius()
                if c is not None:
                    self.temps.append((t, c))
            time.sleep(self.period)

    def celsius_between(self, t0, t1):
        return [c for t, c in self.temps if t0 <= t <= t1]

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    def joules_at(self, t):
        """The counter's value as last sampled at or before t."""
        v = None
        for ts, j in self.samples:
            if ts > t:
                break
            v = j
        if v is None:
            raise ValueError("no sample before t")
        return v

    def windows(self, min_seconds=1.0):
        """[(start, end, joules)] between observed counter changes, each >= min_seconds."""
        out, open_ = [], None
        for (t0, j0), (t1, j1) in zip(self.samples, self.samples[1:]):
            if j1 == j0:
                continue
            if open_ is None:
                open_ = (t1, j1)
            elif t1 - open_[0] >= min_seconds:
                out.append((open_[0], t1, j1 - open_[1]))
                open_ = (t1, j1)
        return out
