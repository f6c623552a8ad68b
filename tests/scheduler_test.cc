// The scheduling policy on a virtual clock: no sleeping, fully deterministic.
#include "scheduling/scheduler.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

using std::chrono::milliseconds;

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : pool_(Capacity()), scheduler_(pool_, milliseconds(1000)) {}

  static PoolCapacity Capacity() {
    PoolCapacity c;
    c.cpu_cores = Quantity::Whole(16);
    c.cpu_threads = 16;
    c.memory_mb = 1 << 20;
    c.max_concurrent_tasks = 16;
    c.gpus.push_back({0, "test", 24});
    return c;
  }

  void Add(const std::string& id, int threads, int64_t priority = 0, double gpus = 0, std::string plugin = "") {
    QueuedTask task;
    task.key = ++key_;
    task.message.id = id;
    task.message.priority = priority;
    task.enqueued_at = now_;
    task.demand.plugin = !plugin.empty() ? plugin : gpus > 0 ? "gpu" : "cpu";
    task.message.plugin = task.demand.plugin;
    task.demand.requirement.cpu_cores = Quantity::FromDouble(0);
    task.demand.requirement.cpu_threads = threads;
    task.demand.requirement.gpu_count = Quantity::FromDouble(gpus);
    keys_[id] = task.key;
    scheduler_.Enqueue(std::move(task));
  }

  std::vector<std::string> Run() {
    std::vector<std::string> ids;
    for (auto& [task, allocation] : scheduler_.TakeRunnable(now_)) ids.push_back(task.message.id);
    return ids;
  }

  void Finish(const std::string& id) { ASSERT_TRUE(pool_.Release(keys_.at(id))); }
  void Advance(milliseconds by) { now_ += by; }

  ResourcePool pool_;
  Scheduler scheduler_;
  Scheduler::Clock::time_point now_{};
  uint64_t key_ = 0;
  std::map<std::string, uint64_t> keys_;
};

TEST_F(SchedulerTest, ATaskThatFitsStartsEvenBehindOneThatDoesNot) {
  Add("big", 12);
  EXPECT_EQ(Run(), std::vector<std::string>{"big"});
  Add("blocked", 8);  // 4 threads left: waits
  Add("small", 2);    // fits: must not wait behind "blocked"
  EXPECT_EQ(Run(), std::vector<std::string>{"small"});
  EXPECT_EQ(scheduler_.size(), 1u);
  Finish("big");
  EXPECT_EQ(Run(), std::vector<std::string>{"blocked"});
}

TEST_F(SchedulerTest, KnowsTheOldestWaitingTaskAndHowManyWaitPerPlugin) {
  EXPECT_FALSE(scheduler_.oldest_enqueued_at());
  Add("hog", 16);
  Run();
  const auto first = now_;
  Add("old-low", 4, 0);  // the oldest, though it will run last
  Advance(milliseconds(50));
  Add("new-high", 4, 9, 0, "other");
  Add("new-high2", 4, 9, 0, "other");
  EXPECT_EQ(scheduler_.oldest_enqueued_at(), first);
  EXPECT_EQ(scheduler_.queued_by_plugin(), (std::map<std::string, size_t>{{"cpu", 1}, {"other", 2}}));
  ASSERT_TRUE(scheduler_.Remove(keys_.at("old-low")));  // cancelled
  EXPECT_EQ(scheduler_.oldest_enqueued_at(), first + milliseconds(50));
  EXPECT_EQ(scheduler_.queued_by_plugin(), (std::map<std::string, size_t>{{"other", 2}}));
  Finish("hog");
  EXPECT_EQ(Run().size(), 2u);
  EXPECT_FALSE(scheduler_.oldest_enqueued_at());
  EXPECT_TRUE(scheduler_.queued_by_plugin().empty());
}

TEST_F(SchedulerTest, HigherPriorityFirstThenFifo) {
  Add("hog", 16);
  Run();
  Add("low", 4, 0);
  Add("high", 4, 5);
  Add("low2", 4, 0);
  Add("high2", 4, 5);
  EXPECT_TRUE(Run().empty());
  Finish("hog");
  EXPECT_EQ(Run(), (std::vector<std::string>{"high", "high2", "low", "low2"}));
}

TEST_F(SchedulerTest, GpuTasksTakeTurnsOnOneDevice) {
  Add("g1", 1, 0, 1);
  Add("g2", 1, 0, 1);
  Add("c1", 1);
  EXPECT_EQ(Run(), (std::vector<std::string>{"g1", "c1"}));
  Finish("g1");
  EXPECT_EQ(Run(), std::vector<std::string>{"g2"});
}

TEST_F(SchedulerTest, ManyBlockedTasksOfOneShapeCostOneLook) {
  Add("hog", 16);
  Run();
  for (int i = 0; i < 10000; ++i) Add("w" + std::to_string(i), 4);
  EXPECT_EQ(scheduler_.shapes(), 1u);
  EXPECT_TRUE(Run().empty());
  Finish("hog");
  EXPECT_EQ(Run().size(), 4u);
  EXPECT_EQ(scheduler_.size(), 9996u);
}

// Without a reservation, a stream of 1-thread tasks would keep a 16-thread
// task waiting forever. After reserve_after it holds a reservation: no new
// small task starts, and it runs once the running ones have finished.
TEST_F(SchedulerTest, ABigTaskUnderAStreamOfSmallOnesStartsAfterTheReserveWait) {
  int next = 0;
  auto small = [&] { return "s" + std::to_string(next++); };
  for (int i = 0; i < 16; ++i) Add(small(), 1);
  EXPECT_EQ(Run().size(), 16u);
  Add("big", 16);
  std::vector<std::string> running;
  for (int i = 0; i < 16; ++i) running.push_back("s" + std::to_string(i));

  // Before the reserve wait: each finished small task is replaced by a new one.
  for (int round = 0; round < 5; ++round) {
    Advance(milliseconds(100));
    Finish(running.front());
    running.erase(running.begin());
    Add(small(), 1);
    const auto started = Run();
    ASSERT_EQ(started.size(), 1u);
    EXPECT_NE(started[0], "big");
    running.push_back(started[0]);
  }
  EXPECT_FALSE(scheduler_.reserved());

  // Past it: small tasks no longer start; freed threads accrue to "big".
  Advance(milliseconds(1000));
  while (running.size() > 1) {
    Finish(running.front());
    running.erase(running.begin());
    Add(small(), 1);
    EXPECT_TRUE(Run().empty());
    EXPECT_EQ(scheduler_.reserved(), keys_.at("big"));
  }
  Finish(running.front());
  EXPECT_EQ(Run(), std::vector<std::string>{"big"});
}

TEST_F(SchedulerTest, AReservationStillLetsThroughWhatItDoesNotNeed) {
  Add("cpu_hog", 15);
  Run();
  Add("gpu_task", 2, 0, 1);  // needs 2 threads, 1 left
  Advance(milliseconds(1500));
  Add("other_gpu", 0, 0, 0.5);  // needs no threads, but the GPU the reserved task needs
  Add("no_thread_cpu", 0);      // needs nothing the GPU task needs
  EXPECT_EQ(Run(), std::vector<std::string>{"no_thread_cpu"});
  EXPECT_EQ(scheduler_.reserved(), keys_.at("gpu_task"));
  Add("one_thread", 1);  // would take the thread the GPU task is waiting for
  EXPECT_TRUE(Run().empty());
  Finish("cpu_hog");
  EXPECT_EQ(Run(), (std::vector<std::string>{"gpu_task", "one_thread"}));
}

// Workload W3: the GPU idled while its next task waited behind a reserved
// CPU task for CPU threads (before: "gpu" waited until "hog" ended).
TEST_F(SchedulerTest, AGpuTaskWhoseDeviceIsFreeGoesAheadOfAReservedCpuTaskThatStillFitsBesideIt) {
  Add("hog", 12);
  Run();
  Add("big", 8);  // 4 threads free: waits, and reserves
  Advance(milliseconds(1500));
  Add("gpu", 2, 0, 1);
  EXPECT_EQ(Run(), std::vector<std::string>{"gpu"});
  EXPECT_EQ(scheduler_.reserved(), keys_.at("big"));
  Add("cpu", 1);  // a CPU task still leaves "big" its threads
  EXPECT_TRUE(Run().empty());
  Finish("hog");
  EXPECT_EQ(Run(), (std::vector<std::string>{"big", "cpu"}));
}

// The exception never starves the reserved task: beside a GPU task's
// threads it could never start, so the GPU task waits behind it.
TEST_F(SchedulerTest, AGpuTaskDoesNotGoAheadOfAReservedCpuTaskItsThreadsWouldStarve) {
  Add("hog", 10);
  Run();
  Add("all", 16);
  Advance(milliseconds(1500));
  Add("gpu", 2, 0, 1);
  EXPECT_TRUE(Run().empty());
  EXPECT_EQ(scheduler_.reserved(), keys_.at("all"));
  Finish("hog");
  EXPECT_EQ(Run(), std::vector<std::string>{"all"});
  Finish("all");
  EXPECT_EQ(Run(), std::vector<std::string>{"gpu"});
}

TEST_F(SchedulerTest, TheLowestPriorityRunsLast) {
  Add("lowest", 1, INT64_MIN);  // its rank used to negate it, which overflowed to the front
  Add("zero", 1, 0);
  Add("highest", 1, INT64_MAX);
  EXPECT_EQ(Run(), (std::vector<std::string>{"highest", "zero", "lowest"}));
}

TEST(SchedulerCaps, AHeadBlockedOnlyByItsOwnCapHoldsNoReservation) {
  PoolCapacity c;
  c.cpu_cores = Quantity::Whole(16);
  c.cpu_threads = 16;
  c.memory_mb = 1 << 20;
  c.max_concurrent_tasks = 16;
  c.gpus = {{0, "test", 24}, {1, "test", 24}};
  c.plugin_caps["gpu_sleep"] = 1;
  ResourcePool pool(c);
  Scheduler scheduler(pool, milliseconds(1000));
  uint64_t key = 0;
  auto add = [&](const std::string& id, const std::string& plugin, int64_t priority) {
    QueuedTask task;
    task.key = ++key;
    task.message.id = id;
    task.message.priority = priority;
    task.demand.plugin = plugin;
    task.demand.requirement.cpu_threads = 1;
    task.demand.requirement.gpu_count = Quantity::Whole(1);
    scheduler.Enqueue(std::move(task));
  };
  auto run = [&](Scheduler::Clock::time_point now) {
    std::vector<std::string> ids;
    for (auto& [task, allocation] : scheduler.TakeRunnable(now)) ids.push_back(task.message.id);
    return ids;
  };
  const Scheduler::Clock::time_point start{};
  add("a1", "gpu_sleep", 0);
  EXPECT_EQ(run(start), std::vector<std::string>{"a1"});  // GPU 0
  add("a2", "gpu_sleep", 0);  // waits for a1: gpu_sleep is capped at 1
  add("b", "sleep", 10);      // GPU 1 is free: before, a2's reservation kept it idle
  EXPECT_EQ(run(start), std::vector<std::string>{"b"});
  EXPECT_FALSE(scheduler.reserved().has_value());
  // The CPU-only form, past reserve_after: the capped head still reserves nothing.
  EXPECT_TRUE(run(start + milliseconds(5000)).empty());
  EXPECT_FALSE(scheduler.reserved().has_value());
}

TEST_F(SchedulerTest, RemoveTakesOneQueuedTask) {
  Add("hog", 16);
  Run();
  Add("a", 1);
  Add("b", 1);
  const auto removed = scheduler_.Remove(keys_.at("a"));
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->message.id, "a");
  EXPECT_FALSE(scheduler_.Remove(keys_.at("a")));
  EXPECT_FALSE(scheduler_.Remove(keys_.at("hog")));  // running, not queued
  Finish("hog");
  EXPECT_EQ(Run(), std::vector<std::string>{"b"});
}

// Cancelled tasks inside a level are skipped; the ends stay live, so the
// oldest and the next to run are the right ones.
TEST_F(SchedulerTest, TasksRemovedInsideTheQueueAreSkippedAndTheRestKeepTheirOrder) {
  Add("hog", 16);
  Run();
  const auto start = now_;
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    Add(id, 1);
    Advance(milliseconds(10));
  }
  for (const char* id : {"c", "b", "a", "e"}) ASSERT_TRUE(scheduler_.Remove(keys_.at(id))) << id;
  EXPECT_FALSE(scheduler_.Remove(keys_.at("b")));
  EXPECT_EQ(scheduler_.size(), 1u);
  EXPECT_EQ(scheduler_.oldest_enqueued_at(), start + milliseconds(30)) << "d's";
  Add("f", 1);
  Finish("hog");
  EXPECT_EQ(Run(), (std::vector<std::string>{"d", "f"}));
  EXPECT_EQ(scheduler_.size(), 0u);
  EXPECT_EQ(scheduler_.shapes(), 0u);
}

TEST_F(SchedulerTest, AnOlderKeyIsQueuedInItsPlaceAndTakeAllGivesKeyOrder) {
  Add("hog", 16);
  Run();
  Add("second", 1);
  Add("other-shape", 2);
  QueuedTask first;
  first.key = 1;  // older than every other
  first.message.id = "first";
  first.message.plugin = first.demand.plugin = "cpu";
  first.demand.requirement.cpu_threads = 1;
  keys_["first"] = 1;
  scheduler_.Enqueue(std::move(first));
  std::vector<std::string> all;
  for (QueuedTask& task : scheduler_.TakeAll()) all.push_back(task.message.id);
  EXPECT_EQ(all, (std::vector<std::string>{"first", "second", "other-shape"}));
}

// The queue holds a task packed (its shape's parts once): all of it comes back.
TEST_F(SchedulerTest, AQueuedTaskComesOutAsItWentIn) {
  Add("hog", 16);
  Run();
  ResultSink* const sink = reinterpret_cast<ResultSink*>(0x1000);
  auto make = [&](bool rare) {
    QueuedTask task;
    task.key = ++key_;
    task.message.id = rare ? "rare-task-with-a-long-id" : "plain";
    task.message.plugin = task.demand.plugin = "cpu";
    task.message.input_msgpack = std::string("\x81\xa1k\xa1v", 5);
    task.message.priority = -3;
    task.demand.task_group = "group";
    task.demand.requirement.cpu_threads = 1;
    task.reply = {.sink = sink, .rpc = true, .address = {"peer", "entry"}};
    task.enqueued_at = now_;
    task.runs = 2;
    if (rare) {
      task.message.timeout_ms = 250;
      task.message.resources.emplace().cpu_threads = 1;
      task.message.retry.emplace().attempts = 3;
      task.message.flow = "flow-1";
    }
    return task;
  };
  for (bool rare : {false, true}) {
    const QueuedTask in = make(rare);
    scheduler_.Enqueue(QueuedTask(in));
    const std::optional<QueuedTask> out = scheduler_.Remove(in.key);
    ASSERT_TRUE(out);
    EXPECT_EQ(out->message.id, in.message.id);
    EXPECT_EQ(out->message.plugin, "cpu");
    EXPECT_EQ(out->message.input_msgpack, in.message.input_msgpack);
    EXPECT_EQ(out->message.priority, -3);
    EXPECT_EQ(out->message.timeout_ms, in.message.timeout_ms);
    EXPECT_EQ(out->message.resources, in.message.resources);
    EXPECT_EQ(out->message.retry, in.message.retry);
    EXPECT_EQ(out->message.flow, in.message.flow);
    EXPECT_EQ(out->demand.task_group, "group");
    EXPECT_EQ(out->demand.requirement.cpu_threads, 1);
    EXPECT_EQ(out->reply.sink, sink);
    EXPECT_TRUE(out->reply.rpc);
    EXPECT_EQ(out->reply.address, (std::vector<std::string>{"peer", "entry"}));
    EXPECT_EQ(out->enqueued_at, now_);
    EXPECT_EQ(out->runs, 2);
  }
}

TEST_F(SchedulerTest, TakeAllEmptiesTheQueue) {
  Add("hog", 16);
  Run();
  Add("a", 1);
  Add("b", 2);
  EXPECT_EQ(scheduler_.TakeAll().size(), 2u);
  EXPECT_EQ(scheduler_.size(), 0u);
  Finish("hog");
  EXPECT_TRUE(Run().empty());
}

}  // namespace
}  // namespace umi
