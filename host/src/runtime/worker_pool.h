// WorkerPool: threads that run plugin calls, grown on demand.
//
// The scheduler has already decided a job may run, so a job must never wait
// for a thread: Submit hands it to an idle thread or starts a new one.
// The thread count therefore tracks the peak number of concurrently running
// tasks, which the resource pool bounds. Idle threads are kept for reuse.
//
// Thread safety: Submit and busy may be called from any thread. The
// destructor waits for running jobs to return.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace umi {

class WorkerPool {
 public:
  WorkerPool() = default;
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `job` on a worker, then `then` once that worker counts as idle
  // again (so whoever `then` notifies finds the worker reusable).
  void Submit(std::function<void()> job, std::function<void()> then = {});
  size_t threads() const;
  // Jobs submitted and not yet returned.
  size_t busy() const;

 private:
  void Loop();

  mutable std::mutex mutex_;
  std::condition_variable work_available_;
  struct Job {
    std::function<void()> run, then;
  };
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  size_t busy_ = 0;
  bool stopping_ = false;
};

}  // namespace umi
