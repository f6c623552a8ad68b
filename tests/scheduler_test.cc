#include "scheduler.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : pool_(Capacity()), scheduler_(pool_) {}

  static PoolCapacity Capacity() {
    PoolCapacity c;
    c.cpu_cores = Quantity::Whole(16);
    c.cpu_threads = 16;
    c.memory_mb = 1 << 20;
    c.max_concurrent_tasks = 16;
    c.gpus.push_back({0, "test", 24});
    return c;
  }

  void Add(const std::string& id, int threads, int64_t priority = 0, double gpus = 0) {
    QueuedTask task;
    task.key = ++key_;
    task.message.id = id;
    task.message.priority = priority;
    task.demand.plugin = gpus > 0 ? "gpu" : "cpu";
    task.demand.requirement.cpu_cores = Quantity::FromDouble(0);
    task.demand.requirement.cpu_threads = threads;
    task.demand.requirement.gpu_count = Quantity::FromDouble(gpus);
    scheduler_.Enqueue(std::move(task));
  }

  std::vector<std::string> Run() {
    std::vector<std::string> ids;
    for (auto& [task, allocation] : scheduler_.TakeRunnable()) {
      ids.push_back(task.message.id);
      keys_[task.message.id] = task.key;
    }
    return ids;
  }

  void Finish(const std::string& id) { ASSERT_TRUE(pool_.Release(keys_.at(id))); }

  ResourcePool pool_;
  Scheduler scheduler_;
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
