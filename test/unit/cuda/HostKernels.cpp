//===- HostKernels.cpp - run the executor's CUDA C++ kernels on the CPU ------===//
#include "HostKernels.h"

#include "common/Error.h"

#include <dlfcn.h>

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
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

struct mt_dim3 { unsigned x, y, z; };
static thread_local mt_dim3 threadIdx, blockIdx;
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

// One block runs at a time; its threads meet at these barriers.
static std::barrier<> *mt_block_barrier;
static std::barrier<> *mt_warp_barrier[32];
static unsigned long long mt_warp_slot[32][32];
static std::mutex mt_atomic_mutex;

static inline void __syncthreads() { mt_block_barrier->arrive_and_wait(); }
template <class T> static T mt_exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  std::memcpy(&mt_warp_slot[warp][lane], &v, sizeof(T));
  mt_warp_barrier[warp]->arrive_and_wait();
  T r = v;
  if (src >= 0 && src < 32) std::memcpy(&r, &mt_warp_slot[warp][src], sizeof(T));
  mt_warp_barrier[warp]->arrive_and_wait();
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
  mt_warp_barrier[warp]->arrive_and_wait();
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
  mt_warp_barrier[warp]->arrive_and_wait();
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
  mt_warp_barrier[warp]->arrive_and_wait();
  for (int j = 0; j < 4; ++j) {
    const unsigned short *const *m = &mt_ldsm_slot[warp][8 * j];
    const unsigned lo = trans ? m[2 * t][g] : m[g][2 * t];
    const unsigned hi = trans ? m[2 * t + 1][g] : m[g][2 * t + 1];
    r[j] = lo | hi << 16;
  }
  mt_warp_barrier[warp]->arrive_and_wait();
}

template <class... A, size_t... I>
static void mt_invoke(void (*f)(A...), void **p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>> *>(p[I])...);
}
template <class... A> static void mt_invoke(void (*f)(A...), void **p) {
  mt_invoke(f, p, std::index_sequence_for<A...>{});
}

extern "C" void mt_host_run(void (*launch)(void **), void **params, unsigned gx, unsigned gy,
                            unsigned gz, unsigned bx) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, 1, 1};
  // One host thread per CUDA thread, reused for every block: the blocks run in order,
  // all threads finishing one before any starts the next.
  std::barrier<> block((std::ptrdiff_t)bx), boundary((std::ptrdiff_t)bx);
  std::vector<std::barrier<> *> warps;
  for (unsigned w = 0; w * 32 < bx; ++w)
    warps.push_back(new std::barrier<>((std::ptrdiff_t)std::min(32u, bx - 32 * w)));
  mt_block_barrier = &block;
  for (size_t w = 0; w < warps.size(); ++w) mt_warp_barrier[w] = warps[w];
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < bx; ++t)
    threads.emplace_back([&, t] {
      threadIdx = {t, 0, 0};
      for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
          for (unsigned x = 0; x < gx; ++x) {
            blockIdx = {x, y, z};
            launch(params);
            boundary.arrive_and_wait();
          }
    });
  for (std::thread &t : threads) t.join();
  for (auto *w : warps) delete w;
}
)SHIM";

} // namespace

HostKernels::HostKernels(const std::string &source, const std::vector<std::string> &kernels) {
  char tmpl[] = "/tmp/mantissa-hostkernels-XXXXXX";
  if (!mkdtemp(tmpl))
    throw Error("host kernels: cannot create a temporary folder");
  dir_ = tmpl;
  const std::string src = dir_ + "/kernels.cpp", lib = dir_ + "/kernels.so", log = dir_ + "/log";
  {
    std::ofstream out(src);
    out << kShim << "\n" << source << "\n";
    for (const std::string &k : kernels)
      out << "extern \"C\" void mt_host_launch_" << k << "(void **p) { mt_invoke(&" << k
          << ", p); }\n";
  }
  const std::string cmd = std::string(MANTISSA_HOST_CXX) +
                          " -std=c++20 -O1 -fPIC -shared -pthread " + "-w -I" +
                          MANTISSA_SOURCE_DIR + " " + src + " -o " + lib + " >" + log + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    throw Error("host kernels: the host compiler rejected " + src + ":\n" + ss.str());
  }
  handle_ = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_)
    throw Error(std::string("host kernels: dlopen: ") + dlerror());
}

HostKernels::~HostKernels() {
  if (handle_)
    dlclose(handle_);
  std::error_code ec;
  if (!dir_.empty() && !std::getenv("MANTISSA_KEEP_HOST_KERNELS"))
    std::filesystem::remove_all(dir_, ec);
}

void HostKernels::launch(const std::string &name, unsigned gx, unsigned gy, unsigned gz,
                         unsigned block, void **params) {
  using Launch = void (*)(void **);
  using Run = void (*)(Launch, void **, unsigned, unsigned, unsigned, unsigned);
  auto run = reinterpret_cast<Run>(dlsym(handle_, "mt_host_run"));
  auto fn = reinterpret_cast<Launch>(dlsym(handle_, ("mt_host_launch_" + name).c_str()));
  if (!run || !fn)
    throw Error("host kernels: no kernel " + name);
  if (block == 0 || block > 1024 || block % 32 != 0)
    throw Error("host kernels: a block of " + std::to_string(block) + " threads");
  run(fn, params, gx, gy, gz, block);
}

} // namespace test
} // namespace mantissa
