/* A stand-in for libnvidia-ml.so.1 with known readings, so that NvmlMeter's
   dlopen path (symbols, error handling, units) is tested without a GPU. One
   device (index 0); the energy counter advances by 1500 mJ per read. */
#include <string.h>

static unsigned long long energyMj = 0;
static int initialised = 0;

int nvmlInit_v2(void) { initialised = 1; return 0; }
int nvmlShutdown(void) { initialised = 0; return 0; }
const char *nvmlErrorString(int r) { return r == 2 ? "Invalid Argument" : "Unknown Error"; }
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **device) {
  if (!initialised || index != 0)
    return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  *device = &energyMj;
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void *device, unsigned long long *mj) {
  (void)device;
  energyMj += 1500;
  *mj = energyMj;
  return 0;
}
int nvmlDeviceGetPowerUsage(void *device, unsigned *mw) { (void)device; *mw = 250500; return 0; }
int nvmlDeviceGetTemperature(void *device, int sensor, unsigned *c) {
  (void)device;
  if (sensor != 0)
    return 2;
  *c = 47;
  return 0;
}
int nvmlDeviceGetClockInfo(void *device, int type, unsigned *mhz) {
  (void)device;
  if (type != 1) /* NVML_CLOCK_SM */
    return 2;
  *mhz = 1980;
  return 0;
}
int nvmlSystemGetDriverVersion(char *buf, unsigned len) { strncpy(buf, "999.1", len); return 0; }
int nvmlDeviceGetName(void *device, char *buf, unsigned len) {
  (void)device;
  strncpy(buf, "Fake GPU", len);
  return 0;
}
