#include "common/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "common/parallel_c.h"

namespace ivcr {
namespace {

// How long a worker that finished a region keeps watching for the next one (and the caller for
// the workers' end) before sleeping on the condition variable. Waking a sleeping worker took
// 30-40 us here (2-core VM), and the native text encoder runs ~100 regions a query, one after
// another: sleeping between them would cost milliseconds. Spinning longer only burns a core
// after the last region.
constexpr std::chrono::microseconds kSpin{50};

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until ready() or kSpin has passed; true when ready() held.
template <class Ready>
bool spin_until(const Ready& ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (ready()) return true;
      relax();
    }
    if (std::chrono::steady_clock::now() >= until) return ready();
  }
}

int default_threads() {
  if (const char* e = std::getenv("IVCR_NUM_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // leaked on purpose: no join at interpreter shutdown
    return *p;
  }

  int size() const { return n_threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    stop_workers();
    n_threads_ = n < 1 ? 1 : n;
    start_workers();
  }

  void run(std::size_t n_tasks, const std::function<void(std::size_t, int)>& fn) {
    if (n_tasks == 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
      for (std::size_t t = 0; t < n_tasks; ++t) fn(t, 0);
      return;
    }
    std::lock_guard<std::mutex> call_lock(call_mu_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0);
      error_ = nullptr;
      active_.store(static_cast<int>(workers_.size()));
      generation_.fetch_add(1, std::memory_order_release);  // publishes the fields above to spinners
    }
    cv_.notify_all();
    work(0);
    if (!spin_until([&] { return active_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return active_.load(std::memory_order_acquire) == 0; });
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  Pool() : n_threads_(default_threads()) { start_workers(); }

  void start_workers() {
    stopping_ = false;
    // A worker starts having seen the current generation: one that started at 0 took the last
    // region (long finished) for a new one, ran past its tasks and decremented active_ once too
    // often, so a later region could return while a worker still ran its fn (a use after free:
    // "double free or corruption" or a hang after set_num_threads, tests/search/test_topk.py).
    const uint64_t now = generation_.load();
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i, now] { loop(i, now); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void work(int worker) {
    for (;;) {
      std::size_t t = next_.fetch_add(1);
      if (t >= n_tasks_) break;
      try {
        (*fn_)(t, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_tasks_);  // stop handing out tasks
      }
    }
  }

  void loop(int worker, uint64_t seen) {
    const auto ready = [&] { return stopping_.load() || generation_.load(std::memory_order_acquire) != seen; };
    for (;;) {
      if (!spin_until(ready)) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, ready);
      }
      if (stopping_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      work(worker);
      // The last worker out wakes the caller, under the lock its wait checks the count under.
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_one();
      }
    }
  }

  std::atomic<int> n_threads_;  // (read without the lock: a search beside set_num_threads)
  std::vector<std::thread> workers_;
  std::mutex call_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(std::size_t, int)>* fn_ = nullptr;
  std::size_t n_tasks_ = 0;
  std::atomic<std::size_t> next_{0};
  std::exception_ptr error_;
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace

int num_threads() { return Pool::get().size(); }
void set_num_threads(int n) { Pool::get().resize(n); }
void parallel_for(std::size_t n_tasks, const std::function<void(std::size_t, int)>& fn) {
  Pool::get().run(n_tasks, fn);
}

}  // namespace ivcr

extern "C" {
int ivcr_pool_threads(void) { return ivcr::num_threads(); }
void ivcr_pool_run(size_t n_tasks, void (*fn)(void* ctx, size_t task), void* ctx) {
  ivcr::parallel_for(n_tasks, [&](std::size_t t, int) { fn(ctx, t); });
}
}
