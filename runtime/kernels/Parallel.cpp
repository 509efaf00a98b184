//===- Parallel.cpp - the std::thread pool behind parallelFor --------------===//
#include "runtime/kernels/Parallel.h"

#include "common/Error.h"

#include <algorithm>
#include <string>
#include <system_error>
#include <thread>

namespace mantissa {

namespace {
// Set while a thread executes a chunk, so that a kernel calling another
// parallelised kernel does not deadlock on (or oversubscribe) the pool.
thread_local bool tInParallelRegion = false;
thread_local ThreadPool *tCurrentPool = nullptr;

// About 20-50 microseconds of polling before a thread blocks on a condition variable:
// long enough to bridge the gap between the parallel regions of one training step.
constexpr int kSpinIterations = 4000;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

struct RegionFlag {
  bool previous;
  RegionFlag() : previous(tInParallelRegion) { tInParallelRegion = true; }
  ~RegionFlag() { tInParallelRegion = previous; }
};

void chunkBounds(int64_t n, int chunks, int i, int64_t &begin, int64_t &end) {
  begin = n * i / chunks;
  end = n * (i + 1) / chunks;
}
} // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0)
    threads = int(std::max(1u, std::thread::hardware_concurrency()));
  size_ = threads;
  try {
    for (int i = 1; i < size_; ++i)
      workers_.emplace_back([this, i] { workerLoop(i); });
  } catch (const std::system_error &e) {
    // Join the workers started so far (a joinable std::thread destroyed by the unwinding
    // would call std::terminate), then report what was asked for.
    int started = int(workers_.size()) + 1;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto &t : workers_)
      t.join();
    throw Error("--threads " + std::to_string(threads) + ": the system refused to start thread " +
                std::to_string(started + 1) + " (" + e.what() + ")");
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto &t : workers_)
    t.join();
}

void ThreadPool::workerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    int64_t n;
    int chunks;
    const std::function<void(int64_t, int64_t)> *fn;
    for (int spin = 0; spin < kSpinIterations &&
                       generation_.load(std::memory_order_acquire) == seen;
         ++spin)
      cpuRelax();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_)
        return;
      seen = generation_;
      n = n_;
      chunks = chunks_;
      fn = fn_;
    }
    if (index < chunks) {
      std::exception_ptr err;
      try {
        RegionFlag flag;
        int64_t b, e;
        chunkBounds(n, chunks, index, b, e);
        (*fn)(b, e);
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (err && !error_)
        error_ = err;
      if (--pending_ == 0)
        done_.notify_one();
    }
  }
}

void ThreadPool::parallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)> &fn) {
  if (n <= 0)
    return;
  grain = std::max<int64_t>(grain, 1);
  int64_t maxChunks = (n + grain - 1) / grain;
  int chunks = int(std::min<int64_t>(size_, maxChunks));
  if (chunks <= 1 || tInParallelRegion) {
    RegionFlag flag;
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> dispatch(dispatchMutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    n_ = n;
    chunks_ = chunks;
    fn_ = &fn;
    pending_ = chunks - 1;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  std::exception_ptr err;
  try {
    RegionFlag flag;
    int64_t b, e;
    chunkBounds(n, chunks, 0, b, e);
    fn(b, e);
  } catch (...) {
    err = std::current_exception();
  }
  for (int spin = 0; spin < kSpinIterations && pending_.load(std::memory_order_acquire) != 0;
       ++spin)
    cpuRelax();
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
  fn_ = nullptr;
  if (!err)
    err = error_;
  error_ = nullptr;
  lock.unlock();
  if (err)
    std::rethrow_exception(err);
}

ThreadPool &currentThreadPool() {
  if (tCurrentPool)
    return *tCurrentPool;
  static ThreadPool global(0);
  return global;
}

ThreadPoolScope::ThreadPoolScope(ThreadPool &pool) : previous_(tCurrentPool) {
  tCurrentPool = &pool;
}
ThreadPoolScope::~ThreadPoolScope() { tCurrentPool = previous_; }

} // namespace mantissa
