#include "runtime/worker_exchanges.h"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace umi {
namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool Readable(int fd) {
  pollfd readable{fd, POLLIN, 0};
  return poll(&readable, 1, 0) > 0;
}

}  // namespace

WorkerExchanges::WorkerExchanges(ProcessPool& processes)
    : processes_(processes), epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

WorkerExchanges::~WorkerExchanges() {
  for (auto& [fd, exchange] : exchanges_) processes_.Discard(exchange.task.plugin->name, std::move(exchange.worker));
  close(epoll_fd_);
}

bool WorkerExchanges::Start(uint64_t key, const std::shared_ptr<UMI_Context>& context, const LoadedPlugin& plugin,
                            const Allocation& allocation, const std::shared_ptr<const WorkerSpec>& spec) {
  if (context->input_msgpack.size() > kMaxLoopFrameBytes) return false;
  const std::string frame = TaskFrame(*context, allocation);
  if (frame.size() > kMaxLoopFrameBytes) return false;
  ProcessPool::Worker worker = processes_.TakeIdle(plugin.name);
  if (worker.pid < 0) return false;
  const double started_at = UnixNow();
  const Clock::time_point start = Clock::now();
  // A worker's socket joins the set once, edge-triggered, and stays while
  // the worker lives (closing it removes it): no epoll_ctl per task. Pump
  // reads each socket dry, and an idle worker's wake-up (it died) finds no
  // exchange and is dropped.
  epoll_event watch{};
  watch.events = EPOLLIN | EPOLLET;
  watch.data.fd = worker.fd;
  const bool watched = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, worker.fd, &watch) == 0 || errno == EEXIST;
  if (!watched || !WriteFrame(worker.fd, kTask, frame)) {
    // It died while idle: reaped and counted; the task has not started.
    ExchangeEnd gone;
    gone.how = ExchangeEnd::How::kWorkerGone;
    processes_.Settle(plugin, *spec, std::move(worker), std::move(gone));
    return false;
  }
  Exchange exchange{.task = {.key = key,
                             .context = context,
                             .plugin = &plugin,
                             .spec = spec,
                             .allocation = allocation,
                             .outcome = {},
                             .started = false,
                             .started_at = started_at,
                             .finished_at = 0,
                             .run_ms = 0},
                    .worker = worker,
                    .settings = {.fd = worker.fd,
                                 .pid = worker.pid,
                                 .plugin = plugin.name,
                                 .kill_grace = processes_.kill_grace(),
                                 .late_frame = [this, name = plugin.name] { processes_.CountLateFrame(name); }},
                    .end = {},
                    .kill_at = std::nullopt,
                    .start = start};
  exchanges_.emplace(worker.fd, std::move(exchange));
  return true;
}

std::vector<WorkerExchanges::Ended> WorkerExchanges::Pump() {
  // Waited on even with no exchange under way: an idle worker's event (a
  // late frame, its death) must leave the ready list, or the set would stay
  // readable and the loop would spin.
  std::vector<Ended> ended;
  epoll_event events[64];
  const int ready = epoll_wait(epoll_fd_, events, 64, 0);
  for (int i = 0; i < ready; ++i) {
    const auto found = exchanges_.find(events[i].data.fd);
    if (found == exchanges_.end()) continue;
    Exchange& exchange = found->second;
    bool over = false;
    // Every whole frame there now: a task's kStarted and kDone often come together.
    do {
      FrameType type{};
      std::string payload;
      if (!ReadFrame(exchange.worker.fd, type, payload)) {
        exchange.end.how = ExchangeEnd::How::kWorkerGone;
        over = true;
      } else {
        over = TakeFrame(exchange.settings, *exchange.task.context, type, payload, exchange.end);
      }
    } while (!over && Readable(exchange.worker.fd));
    if (over) ended.push_back(End(found));
  }
  const Clock::time_point now = Clock::now();
  for (auto exchange = exchanges_.begin(); exchange != exchanges_.end();) {
    const auto next = std::next(exchange);
    Exchange& under_way = exchange->second;
    if (!under_way.kill_at && under_way.task.context->cancelled()) {
      under_way.kill_at = now + processes_.kill_grace();
      SendCancel(under_way.settings, under_way.task.context->task_id);
    }
    if (under_way.kill_at && now >= *under_way.kill_at) {
      under_way.end.started = true;  // whatever it did, it was told to stop: no second try
      under_way.end.how = ExchangeEnd::How::kCancelIgnored;
      ended.push_back(End(exchange));
    }
    exchange = next;
  }
  return ended;
}

WorkerExchanges::Ended WorkerExchanges::End(std::map<int, Exchange>::iterator found) {
  Exchange exchange = std::move(found->second);
  exchanges_.erase(found);
  Ended& task = exchange.task;
  task.run_ms = std::chrono::duration<double, std::milli>(Clock::now() - exchange.start).count();
  task.finished_at = task.started_at + task.run_ms / 1000.0;
  task.started = exchange.end.started;
  task.outcome = processes_.Settle(*task.plugin, *task.spec, std::move(exchange.worker), std::move(exchange.end));
  return std::move(task);
}

std::optional<std::chrono::milliseconds> WorkerExchanges::due_in() const {
  std::optional<std::chrono::milliseconds> due;
  const Clock::time_point now = Clock::now();
  for (const auto& [fd, exchange] : exchanges_) {
    std::chrono::milliseconds in{0};
    if (exchange.kill_at) {
      in = std::max(in, std::chrono::ceil<std::chrono::milliseconds>(*exchange.kill_at - now));
    } else if (!exchange.task.context->cancelled()) {
      continue;
    }
    if (!due || in < *due) due = in;
  }
  return due;
}

}  // namespace umi
