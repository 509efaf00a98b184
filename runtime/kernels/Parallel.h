//===- Parallel.h - a small deterministic parallel-for ---------------------===//
//
// The runtime may not link OpenMP (the binary must depend on glibc/libstdc++ only),
// so kernels parallelise through this std::thread pool. The split of a range into
// chunks depends only on the range, the grain and the pool size, never on timing:
// a kernel whose chunks write disjoint outputs, and whose reductions combine
// per-block partial results in a fixed order, gives the same bits every run.
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mantissa {

class ThreadPool {
public:
  /// `threads` workers including the calling thread; 0 means the hardware count.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return size_; }

  /// Calls fn(begin, end) over [0, n) cut into at most size() contiguous chunks of
  /// at least `grain` items each. The caller runs the first chunk. Nested calls (from
  /// inside fn) run serially. The first exception thrown by a chunk is rethrown here.
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &fn);

private:
  void workerLoop(int index);

  int size_;
  std::vector<std::thread> workers_;
  std::mutex dispatchMutex_; // one parallelFor at a time per pool
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  // Atomic so that threads can spin on them briefly before blocking (waking a
  // sleeping thread costs tens of microseconds, as much as a small kernel); they
  // are still only written under mutex_.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  int chunks_ = 0;
  int64_t n_ = 0;
  const std::function<void(int64_t, int64_t)> *fn_ = nullptr;
  std::exception_ptr error_;
  bool stop_ = false;
};

/// The pool kernels run on: the innermost ThreadPoolScope on this thread, else a
/// process-wide pool of hardware size.
ThreadPool &currentThreadPool();

/// Makes `pool` the current pool on this thread for the scope's lifetime.
class ThreadPoolScope {
public:
  explicit ThreadPoolScope(ThreadPool &pool);
  ~ThreadPoolScope();
  ThreadPoolScope(const ThreadPoolScope &) = delete;
  ThreadPoolScope &operator=(const ThreadPoolScope &) = delete;

private:
  ThreadPool *previous_;
};

inline void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &fn) {
  currentThreadPool().parallelFor(n, grain, fn);
}

/// The grain for items of `workPerItem` elements each: a task gets at least ~16K
/// elements of work, so that waking a thread (tens of microseconds) pays off.
inline int64_t grainFor(int64_t workPerItem) {
  constexpr int64_t kMinTaskWork = 1 << 14;
  return workPerItem >= kMinTaskWork ? 1 : kMinTaskWork / (workPerItem > 0 ? workPerItem : 1);
}

} // namespace mantissa
