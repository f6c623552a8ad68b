#include "host/admission.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : pool_(Capacity()) {
    plugin_.name = "sleep";
    plugin_.requirement.cpu_threads = 4;
    plugin_.requirement.memory_mb = 64;
    task_.id = "t";
    task_.plugin = "sleep";
    task_.input_msgpack = std::string("\x80", 1);
    facts_.plugin = &plugin_;
    facts_.max_queued = 10;
  }
  static PoolCapacity Capacity() {
    PoolCapacity c;
    c.cpu_cores = Quantity::Whole(8);
    c.cpu_threads = 8;
    c.memory_mb = 1024;
    c.max_concurrent_tasks = 4;
    return c;
  }
  std::string RefusedCode() {
    const Admission admission = Admit(task_, facts_, pool_);
    const auto* refused = std::get_if<Status>(&admission);
    return refused ? std::string(WireCode(refused->code())) : "(not refused)";
  }

  ResourcePool pool_;
  LoadedPlugin plugin_;
  TaskMessage task_;
  AdmissionFacts facts_;
};

TEST_F(AdmissionTest, AdmitsWithThePluginsDemandAndAFingerprint) {
  const Admission admission = Admit(task_, facts_, pool_);
  const auto* admitted = std::get_if<Admitted>(&admission);
  ASSERT_NE(admitted, nullptr);
  EXPECT_EQ(admitted->demand.requirement.cpu_threads, 4);
  EXPECT_EQ(admitted->demand.plugin, "sleep");
  EXPECT_EQ(admitted->fingerprint, Fingerprint(task_));
}

TEST_F(AdmissionTest, RefusesInOrderWithTheWireCodes) {
  facts_.serving = false;
  EXPECT_EQ(RefusedCode(), "shutting_down");
  facts_.serving = true;
  facts_.id_active = true;
  EXPECT_EQ(RefusedCode(), "duplicate_id");
  facts_.id_active = false;
  facts_.plugin = nullptr;
  EXPECT_EQ(RefusedCode(), "unknown_plugin");
  facts_.plugin_refusal = "initialize failed";
  const Admission refused = Admit(task_, facts_, pool_);
  EXPECT_EQ(std::get<Status>(refused).message(), "plugin 'sleep' was refused at load: initialize failed");
  facts_.plugin = &plugin_;
  facts_.from_rpc = true;
  facts_.queued = 10;
  EXPECT_EQ(RefusedCode(), "queue_full");
  facts_.from_rpc = false;
  EXPECT_EQ(RefusedCode(), "(not refused)") << "the tasks socket is held back instead";
  task_.resources.emplace();
  task_.resources->cpu_threads = 64;
  EXPECT_EQ(RefusedCode(), "bad_request") << "overrides not allowed";
  facts_.allow_task_overrides = true;
  EXPECT_EQ(RefusedCode(), "infeasible");
}

TEST_F(AdmissionTest, ARetryGetsTheStoredResultAndAnotherTaskAConflict) {
  const ResultCache::Entry same{"stored", {}, Fingerprint(task_)};
  facts_.finished = &same;
  const Admission retry = Admit(task_, facts_, pool_);
  ASSERT_TRUE(std::holds_alternative<Retry>(retry));
  EXPECT_EQ(*std::get<Retry>(retry).result, "stored");
  TaskFingerprint another = Fingerprint(task_);
  ++another.high;
  const ResultCache::Entry other{"stored", {}, another};
  facts_.finished = &other;
  EXPECT_EQ(RefusedCode(), "id_conflict");
}

}  // namespace
}  // namespace umi
