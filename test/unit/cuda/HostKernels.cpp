//===- HostKernels.cpp - run the executor's CUDA C++ kernels on the CPU ------===//
#include "HostKernels.h"

#include "common/Error.h"
#include "common/Hash.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mantissa {
namespace test {

namespace {

// Compiled before the kernels' source. Declares what the kernels use of CUDA C++.
const char *kShim = R"SHIM(
#define MT_HOST_EMULATION 1
#include "common/Float16.h"
#include <sys/mman.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

struct mt_dim3 { unsigned x, y, z; };
static mt_dim3 threadIdx, blockIdx; // the running fiber's
static mt_dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct __attribute__((aligned(8))) int2 { int x, y; };
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline unsigned short mt_host_float_to_half(float f) { return mantissa::floatToHalfBits(f); }
static inline float mt_host_half_to_float(unsigned short h) { return mantissa::halfBitsToFloat(h); }
static inline unsigned short mt_host_float_to_bf16(float f) { return mantissa::floatToBF16Bits(f); }
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
static inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
using std::isfinite;
using std::isnan;
template <class T> static inline T min(T a, T b) { return b < a ? b : a; }
template <class T> static inline T max(T a, T b) { return a < b ? b : a; }

// The threads of a block are fibers on the launching host thread: each runs until it
// waits at a barrier or ends, then the next one runs (mt_host_run's scheduler). A
// barrier lets its fibers on once all `expected` have arrived; a fiber that waits
// where the others never come is a deadlock, which the scheduler reports.
struct mt_fbarrier { unsigned expected = 0, arrived = 0; unsigned long generation = 0; };
struct mt_fiber {
  void *sp = nullptr;                  // saved stack pointer while switched out
  const mt_fbarrier *waiting = nullptr; // the barrier it waits at
  unsigned long generation = 0;        // ... until its generation moves past this
  bool done = false;
};
static mt_fbarrier mt_block_barrier_storage, mt_warp_barrier_storage[32];
static mt_fbarrier *mt_block_barrier = &mt_block_barrier_storage;
static mt_fbarrier *mt_warp_barrier[32];
static mt_fiber mt_fibers[1024];
static unsigned long long mt_warp_slot[32][32];
static unsigned mt_current;
static void *mt_scheduler_sp;
static void (*mt_kernel)(void **);
static void **mt_params;
static std::mutex mt_atomic_mutex;

// Saves the callee-saved registers on this stack and its pointer in *from, then
// continues on `to` where it was saved (System V x86-64).
extern "C" void mt_ctx_switch(void **from, void *to);
asm(R"ASM(
  .text
  .globl mt_ctx_switch
  .hidden mt_ctx_switch
  .type mt_ctx_switch, @function
mt_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mt_ctx_switch, .-mt_ctx_switch
)ASM");

static void mt_arrive_and_wait(mt_fbarrier *b) {
  if (++b->arrived == b->expected) {
    b->arrived = 0;
    ++b->generation;
    return;
  }
  mt_fiber &f = mt_fibers[mt_current];
  f.waiting = b;
  f.generation = b->generation;
  mt_ctx_switch(&f.sp, mt_scheduler_sp);
}

static inline void __syncthreads() { mt_arrive_and_wait(mt_block_barrier); }
template <class T> static T mt_exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  std::memcpy(&mt_warp_slot[warp][lane], &v, sizeof(T));
  mt_arrive_and_wait(mt_warp_barrier[warp]);
  T r = v;
  if (src >= 0 && src < 32) std::memcpy(&r, &mt_warp_slot[warp][src], sizeof(T));
  mt_arrive_and_wait(mt_warp_barrier[warp]);
  return r;
}
template <class T> static inline T __shfl_down_sync(unsigned, T v, int d) {
  return mt_exchange(v, (int)(threadIdx.x & 31) + d);
}
template <class T> static inline T __shfl_sync(unsigned, T v, int src) { return mt_exchange(v, src & 31); }
static inline int atomicCAS(int *p, int cmp, int v) {
  std::lock_guard<std::mutex> g(mt_atomic_mutex);
  const int old = *p;
  if (old == cmp) *p = v;
  return old;
}
template <class T> static inline T atomicAdd(T *p, T v) {
  std::lock_guard<std::mutex> g(mt_atomic_mutex);
  const T old = *p;
  *p = old + v;
  return old;
}

// mma.sync.m16n8k16 (row-major A, column-major B, fp32 accumulation) of one warp: each
// lane publishes its fragments (the layout in ConvKernels.cpp), then computes its own
// four results from the whole warp's A (16 x 16) and B (16 x 8), in double, rounded to
// float once (the tensor core's internal order is not specified).
static unsigned mt_mma_slot[32][32][6];
static float mt_host_mma_half(unsigned bits, bool bf16) {
  return bf16 ? __uint_as_float(bits << 16) : mantissa::halfBitsToFloat((unsigned short)bits);
}
static void mt_host_mma16816(float *c, const unsigned *a, const unsigned *b, bool bf16) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int i = 0; i < 4; ++i) mt_mma_slot[warp][lane][i] = a[i];
  mt_mma_slot[warp][lane][4] = b[0];
  mt_mma_slot[warp][lane][5] = b[1];
  mt_arrive_and_wait(mt_warp_barrier[warp]);
  auto A = [&](int r, int k) { // element (r, k) of the warp's A
    const int l = (r % 8) * 4 + (k % 8) / 2, reg = (r >= 8) + 2 * (k >= 8);
    const unsigned w = mt_mma_slot[warp][l][reg];
    return mt_host_mma_half(k % 2 ? w >> 16 : w & 0xffffu, bf16);
  };
  auto B = [&](int k, int n) {
    const int l = n * 4 + (k % 8) / 2;
    const unsigned w = mt_mma_slot[warp][l][4 + (k >= 8)];
    return mt_host_mma_half(k % 2 ? w >> 16 : w & 0xffffu, bf16);
  };
  const int g = lane >> 2, t = lane & 3;
  float r[4];
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
    double s = c[e];
    for (int k = 0; k < 16; ++k) s += (double)A(row, k) * (double)B(k, col);
    r[e] = (float)s;
  }
  mt_arrive_and_wait(mt_warp_barrier[warp]);
  for (int e = 0; e < 4; ++e) c[e] = r[e];
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 of one warp: each lane publishes
// the row address it gives, then reads its own four registers (ConvKernels.cpp's
// mt_ldmatrix_x4) from the rows of the other lanes.
static const unsigned short *mt_ldsm_slot[32][32];
static void mt_host_ldmatrix_x4(unsigned *r, const unsigned short *row, bool trans) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  if (reinterpret_cast<uintptr_t>(row) % 16 != 0) {
    std::fprintf(stderr, "ldmatrix: lane %d's row address is not 16-byte aligned\n", lane);
    std::abort();
  }
  mt_ldsm_slot[warp][lane] = row;
  mt_arrive_and_wait(mt_warp_barrier[warp]);
  for (int j = 0; j < 4; ++j) {
    const unsigned short *const *m = &mt_ldsm_slot[warp][8 * j];
    const unsigned lo = trans ? m[2 * t][g] : m[g][2 * t];
    const unsigned hi = trans ? m[2 * t + 1][g] : m[g][2 * t + 1];
    r[j] = lo | hi << 16;
  }
  mt_arrive_and_wait(mt_warp_barrier[warp]);
}

template <class... A, size_t... I>
static void mt_invoke(void (*f)(A...), void **p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>> *>(p[I])...);
}
template <class... A> static void mt_invoke(void (*f)(A...), void **p) {
  mt_invoke(f, p, std::index_sequence_for<A...>{});
}
// Parameter i's offset and size in the kernel's parameter buffer, as cudaFuncGetParamInfo
// gives them (each parameter at its alignment); 1 past the last parameter.
template <class... A>
static int mt_param_info(void (*)(A...), size_t i, size_t *offset, size_t *size) {
  const size_t sizes[] = {sizeof(std::remove_cv_t<std::remove_reference_t<A>>)..., 0};
  const size_t aligns[] = {alignof(std::remove_cv_t<std::remove_reference_t<A>>)..., 1};
  if (i >= sizeof...(A)) return 1;
  size_t o = 0;
  for (size_t j = 0;; ++j) {
    o = (o + aligns[j] - 1) / aligns[j] * aligns[j];
    if (j == i) { *offset = o; *size = sizes[j]; return 0; }
    o += sizes[j];
  }
}

// A fiber's first code: the kernel, then back to the scheduler for good.
static void mt_fiber_main() {
  mt_kernel(mt_params);
  mt_fibers[mt_current].done = true;
  void *unused;
  mt_ctx_switch(&unused, mt_scheduler_sp);
  std::abort(); // never resumed
}

extern "C" void mt_host_run(void (*launch)(void **), void **params, unsigned gx, unsigned gy,
                            unsigned gz, unsigned bx) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, 1, 1};
  mt_kernel = launch;
  mt_params = params;
  // One stack per thread of a block, reserved once (pages are touched only as used).
  constexpr size_t kStack = 256 << 10;
  static char *stacks = [] {
    void *m = mmap(nullptr, kStack * 1024, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) { std::perror("host kernels: mmap"); std::abort(); }
    return static_cast<char *>(m);
  }();
  mt_block_barrier_storage = {bx};
  for (unsigned w = 0; w * 32 < bx; ++w) {
    mt_warp_barrier_storage[w] = {std::min(32u, bx - 32 * w)};
    mt_warp_barrier[w] = &mt_warp_barrier_storage[w];
  }
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      for (unsigned x = 0; x < gx; ++x) {
        blockIdx = {x, y, z};
        for (unsigned t = 0; t < bx; ++t) {
          // A new stack that "returns" into mt_fiber_main: six register slots, then
          // its address, then a fake return address (the ABI's alignment at entry).
          void **top = reinterpret_cast<void **>(stacks + kStack * (t + 1));
          top[-1] = nullptr;
          top[-2] = reinterpret_cast<void *>(&mt_fiber_main);
          for (int r = 3; r <= 8; ++r) top[-r] = nullptr;
          mt_fibers[t] = mt_fiber{};
          mt_fibers[t].sp = top - 8;
        }
        for (unsigned left = bx; left > 0;) {
          bool ran = false;
          for (unsigned t = 0; t < bx; ++t) {
            mt_fiber &f = mt_fibers[t];
            if (f.done || (f.waiting && f.waiting->generation == f.generation)) continue;
            f.waiting = nullptr;
            mt_current = t;
            threadIdx = {t, 0, 0};
            mt_ctx_switch(&mt_scheduler_sp, f.sp);
            ran = true;
            if (f.done) --left;
          }
          if (!ran) {
            std::fprintf(stderr, "host kernels: deadlock in block (%u, %u, %u): %u of %u threads "
                                 "wait at a barrier the others never reach\n", x, y, z, left, bx);
            std::abort();
          }
        }
      }
}
)SHIM";

} // namespace

HostKernels::HostKernels(const std::string &source, const std::vector<std::string> &kernels,
                         const std::string &cacheDir) {
  std::stringstream text;
  text << kShim << "\n" << source << "\n";
  for (const std::string &k : kernels)
    text << "extern \"C\" void mt_host_launch_" << k << "(void **p) { mt_invoke(&" << k
         << ", p); }\nextern \"C\" int mt_host_param_info_" << k
         << "(size_t i, size_t *o, size_t *s) { return mt_param_info(&" << k << ", i, o, s); }\n";
  const std::string program = text.str();
  std::string cached;
  if (!cacheDir.empty()) {
    // The one header the shim includes is part of what the library is compiled from.
    std::stringstream header;
    header << std::ifstream(std::string(MANTISSA_SOURCE_DIR) + "/common/Float16.h").rdbuf();
    const std::string float16 = header.str();
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.so",
                  static_cast<unsigned long long>(fnv1a64(program + MANTISSA_HOST_CXX + float16)));
    cached = cacheDir + "/" + name;
    if (open(cached).empty())
      return;
  }
  char tmpl[] = "/tmp/mantissa-hostkernels-XXXXXX";
  if (!mkdtemp(tmpl))
    throw Error("host kernels: cannot create a temporary folder");
  dir_ = tmpl;
  const std::string src = dir_ + "/kernels.cpp", lib = dir_ + "/kernels.so", log = dir_ + "/log";
  std::ofstream(src) << program;
  const std::string cmd = std::string(MANTISSA_HOST_CXX) +
                          " -std=c++20 -O1 -fPIC -shared -pthread " + "-w -I" +
                          MANTISSA_SOURCE_DIR + " " + src + " -o " + lib + " >" + log + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    throw Error("host kernels: the host compiler rejected " + src + ":\n" + ss.str());
  }
  std::string load = lib;
  if (!cached.empty()) {
    // Another process may be compiling the same library: each renames its own copy
    // into place, so a reader finds a whole file or none.
    std::error_code ec;
    std::filesystem::create_directories(cacheDir, ec);
    const std::string part = cached + "." + std::to_string(getpid());
    std::filesystem::copy_file(lib, part, std::filesystem::copy_options::overwrite_existing, ec);
    if (!ec)
      std::filesystem::rename(part, cached, ec);
    if (!ec)
      load = cached;
  }
  if (std::string why = open(load); !why.empty())
    throw Error("host kernels: " + why);
}

std::string HostKernels::open(const std::string &lib) {
  handle_ = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char *e = dlerror();
    return "dlopen " + lib + ": " + (e ? e : "unknown error");
  }
  run_ = reinterpret_cast<Run>(dlsym(handle_, "mt_host_run"));
  if (run_)
    return "";
  dlclose(handle_);
  handle_ = nullptr;
  return lib + " has no mt_host_run";
}

HostKernels::~HostKernels() {
  if (handle_)
    dlclose(handle_);
  std::error_code ec;
  if (!dir_.empty() && !std::getenv("MANTISSA_KEEP_HOST_KERNELS"))
    std::filesystem::remove_all(dir_, ec);
}

HostKernels::Entry HostKernels::entry(const std::string &name) const {
  Entry e;
  e.launch =
      reinterpret_cast<void (*)(void **)>(dlsym(handle_, ("mt_host_launch_" + name).c_str()));
  e.paramInfo = reinterpret_cast<int (*)(size_t, size_t *, size_t *)>(
      dlsym(handle_, ("mt_host_param_info_" + name).c_str()));
  if (!e.launch || !e.paramInfo)
    throw Error("host kernels: no kernel " + name);
  return e;
}

void HostKernels::launch(const std::string &name, unsigned gx, unsigned gy, unsigned gz,
                         unsigned block, void **params) {
  launch(entry(name), gx, gy, gz, block, params);
}

void HostKernels::launch(const Entry &kernel, unsigned gx, unsigned gy, unsigned gz, unsigned block,
                         void **params) {
  if (block == 0 || block > 1024 || block % 32 != 0)
    throw Error("host kernels: a block of " + std::to_string(block) + " threads");
  run_(kernel.launch, params, gx, gy, gz, block);
}

} // namespace test
} // namespace mantissa
