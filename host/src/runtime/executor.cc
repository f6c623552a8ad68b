#include "runtime/executor.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "config/machine.h"

namespace umi {
namespace {

using Clock = std::chrono::steady_clock;

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Acquires the task's instance state (`acquire`), then runs the plugin's
// execute; an exception that escapes the plugin becomes its error.
template <typename Acquire>
OwnedError Execute(const LoadedPlugin& plugin, UMI_Context& context, Acquire acquire) {
  try {
    if (OwnedError error = acquire()) return error;
    return OwnedError(plugin.execute(&context));
  } catch (const std::exception& e) {
    return MakeError("plugin_error", std::string("exception escaped the plugin ABI: ") + e.what());
  } catch (...) {
    return MakeError("plugin_error", "exception escaped the plugin ABI");
  }
}

void PinThread(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  if (const int error = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); error != 0) {
    spdlog::warn("cannot pin worker to its granted CPUs: {}", std::strerror(error));
  }
}

}  // namespace

Mailbox::Mailbox() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

Mailbox::~Mailbox() { close(fd_); }

void Mailbox::Post(Mail mail) {
  bool wake;
  {
    std::lock_guard lock(mutex_);
    wake = mail_.empty();  // otherwise a wake-up is already pending
    mail_.push_back(std::move(mail));
  }
  if (wake) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof(one));
  }
}

std::deque<Mail> Mailbox::TakeAll() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(fd_, &count, sizeof(count));
  std::lock_guard lock(mutex_);
  return std::exchange(mail_, {});
}

Executor::Executor(std::filesystem::path self_binary, std::chrono::milliseconds kill_grace)
    : processes_(std::move(self_binary), kill_grace), exchanges_(processes_) {
  CPU_ZERO(&process_cpus_);
  sched_getaffinity(0, sizeof(process_cpus_), &process_cpus_);
}

std::function<void(double, std::string_view)> Executor::ProgressReporter(uint64_t key) {
  return [this, key](double fraction, std::string_view message) {
    mailbox_.Post(Progress{key, fraction, std::string(message)});
  };
}

std::deque<Mail> Executor::TakeAll() {
  // Pumped first: the progress its frames report (posted to the mailbox)
  // comes before the end of the task that made it.
  std::vector<WorkerExchanges::Ended> exchanges = exchanges_.Pump();
  std::deque<Mail> mail = mailbox_.TakeAll();
  for (WorkerExchanges::Ended& ended : exchanges) {
    if (!ended.started && ended.outcome.crashed) {
      // Its worker was dying when it was handed the task: a fresh one.
      spdlog::warn("task '{}': its worker process died before starting it ({}); trying a fresh worker",
                   ended.context->task_id, ended.outcome.error ? ended.outcome.error->message : "");
      RunOnThread(ended.key, std::move(ended.context), *ended.plugin, ended.allocation, std::move(ended.spec));
      continue;
    }
    mail.push_back(Finished{.key = ended.key,
                            .error = std::move(ended.outcome.error),
                            .started_at = ended.started_at,
                            .finished_at = ended.finished_at,
                            .run_ms = ended.run_ms,
                            .crashed = ended.outcome.crashed,
                            .killed = ended.outcome.killed});
  }
  return mail;
}

void Executor::Run(uint64_t key, std::shared_ptr<UMI_Context> context, const LoadedPlugin& plugin,
                   const Allocation& allocation, std::shared_ptr<const WorkerSpec> isolated) {
  if (isolated && exchanges_.Start(key, context, plugin, allocation, isolated)) return;
  RunOnThread(key, std::move(context), plugin, allocation, std::move(isolated));
}

void Executor::RunOnThread(uint64_t key, std::shared_ptr<UMI_Context> context, const LoadedPlugin& plugin,
                           const Allocation& allocation, std::shared_ptr<const WorkerSpec> isolated) {
  auto finished = std::make_shared<Finished>();
  finished->key = key;
  auto run = [this, finished, context = std::move(context), plugin = &plugin, allocation,
              spec = std::move(isolated)] {
    finished->started_at = UnixNow();
    const auto start = Clock::now();
    if (spec) {  // the worker process pins itself and limits its memory
      IsolatedOutcome outcome = processes_.Run(*plugin, *spec, *context, allocation);
      finished->error = std::move(outcome.error);
      finished->crashed = outcome.crashed;
      finished->killed = outcome.killed;
      finished->run_ms = Millis(Clock::now() - start);
      finished->finished_at = UnixNow();
      return;
    }
    const std::vector<int>& cpus = allocation.cpu_ids;
    if (!cpus.empty()) PinThread(cpus);
    if (!context->gpu_ids.empty()) BindThreadToGpu(context->gpu_ids.front());
    finished->error =
        Execute(*plugin, *context, [&] { return AcquireInstanceState(*plugin, &context->instance_state); });
    finished->run_ms = Millis(Clock::now() - start);
    finished->finished_at = UnixNow();
    if (!cpus.empty()) pthread_setaffinity_np(pthread_self(), sizeof(process_cpus_), &process_cpus_);
  };
  // Posted once the worker is idle again, so the next task can reuse it.
  workers_.Submit(std::move(run), [this, finished] { mailbox_.Post(std::move(*finished)); });
}

Finished Executor::RunInline(uint64_t key, UMI_Context& context, const LoadedPlugin& plugin) {
  Finished finished;
  finished.key = key;
  finished.started_at = UnixNow();
  const auto start = Clock::now();
  // Inline tasks keep their instances here, finalized with the Executor
  // while the plugins are still loaded (a thread_local of the main thread
  // would outlive them).
  finished.error =
      Execute(plugin, context, [&] { return inline_instances_.Acquire(plugin, &context.instance_state); });
  const auto end = Clock::now();
  finished.run_ms = Millis(end - start);
  // The wall clock moved as the steady one did: one clock read less per task.
  finished.finished_at = finished.started_at + std::chrono::duration<double>(end - start).count();
  if (finished.run_ms > kInlineOverrunMs && !warned_overrun_.count(plugin.name)) {
    warned_overrun_.insert(plugin.name);
    spdlog::warn("plugin {} declares run_inline but a task took {:.1f} ms on the event loop (keep it under {} ms, "
                 "or drop run_inline); said once", plugin.name, finished.run_ms, kInlineOverrunMs);
  }
  return finished;
}

}  // namespace umi
