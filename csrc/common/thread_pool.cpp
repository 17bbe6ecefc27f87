#include "common/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ivcr {
namespace {

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
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return active_ == 0; });
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
    const uint64_t now = generation_;
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i, now] { loop(i, now); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
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
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work(worker);
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(std::size_t, int)>* fn_ = nullptr;
  std::size_t n_tasks_ = 0;
  std::atomic<std::size_t> next_{0};
  std::exception_ptr error_;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace

int num_threads() { return Pool::get().size(); }
void set_num_threads(int n) { Pool::get().resize(n); }
void parallel_for(std::size_t n_tasks, const std::function<void(std::size_t, int)>& fn) {
  Pool::get().run(n_tasks, fn);
}

}  // namespace ivcr
