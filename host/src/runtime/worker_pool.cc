#include "runtime/worker_pool.h"

namespace umi {

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_available_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void WorkerPool::Submit(std::function<void()> job, std::function<void()> then) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back({std::move(job), std::move(then)});
    ++busy_;
    // Every queued job needs its own idle thread, or it would wait.
    if (jobs_.size() > idle_) {
      threads_.emplace_back([this] { Loop(); });
      return;
    }
  }
  // Outside the lock: the woken thread would otherwise wake into a held mutex.
  work_available_.notify_one();
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

size_t WorkerPool::busy() const {
  std::lock_guard lock(mutex_);
  return busy_;
}

void WorkerPool::Loop() {
  std::unique_lock lock(mutex_);
  ++idle_;
  while (true) {
    work_available_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    --idle_;
    lock.unlock();
    job.run();
    lock.lock();
    --busy_;
    ++idle_;
    if (job.then) {
      lock.unlock();
      job.then();
      lock.lock();
    }
  }
}

}  // namespace umi
