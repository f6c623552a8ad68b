// The Executor on real worker threads with an in-process plugin.
#include "runtime/executor.h"

#include <gtest/gtest.h>
#include <poll.h>

namespace umi {
namespace {

UMI_Error* Succeed(UMI_Context* context) {
  context->on_progress(0.5, "half");
  context->output_msgpack = std::string("\x80", 1);
  return nullptr;
}
UMI_Error* Fail(UMI_Context*) { return new UMI_Error{"bad_input", "no"}; }
UMI_Error* Throw(UMI_Context*) { throw std::runtime_error("escaped"); }

// Waits for the mailbox (an event, with a guard) and takes what is there.
std::deque<Mail> Wait(Executor& executor) {
  pollfd readable{executor.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&readable, 1, 60000), 1);
  return executor.TakeAll();
}

Finished RunOne(Executor& executor, uint64_t key, UMI_Error* (*execute)(UMI_Context*), std::vector<Progress>* progress) {
  LoadedPlugin plugin;
  plugin.name = "fake";
  plugin.execute = execute;
  auto context = std::make_shared<UMI_Context>("t", "fake", std::string("\x80", 1), Allocation{});
  context->on_progress = executor.ProgressReporter(key);
  executor.Run(key, context, plugin, Allocation{}, nullptr);
  while (true) {
    for (Mail& mail : Wait(executor)) {
      if (auto* p = std::get_if<Progress>(&mail)) {
        if (progress) progress->push_back(*p);
        continue;
      }
      return std::move(std::get<Finished>(mail));
    }
  }
}

TEST(Executor, ReportsProgressThenOneFinishedPerRun) {
  Executor executor("/nonexistent/umi-host", std::chrono::milliseconds(100));
  std::vector<Progress> progress;
  const Finished ok = RunOne(executor, 7, &Succeed, &progress);
  EXPECT_EQ(ok.key, 7u);
  EXPECT_EQ(ok.error, nullptr);
  EXPECT_GE(ok.finished_at, ok.started_at);
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_EQ(progress[0].key, 7u);
  EXPECT_EQ(progress[0].message, "half");
}

TEST(Executor, ThePluginsErrorAndAnEscapedExceptionComeBackAsErrors) {
  Executor executor("/nonexistent/umi-host", std::chrono::milliseconds(100));
  const Finished failed = RunOne(executor, 1, &Fail, nullptr);
  ASSERT_NE(failed.error, nullptr);
  EXPECT_EQ(failed.error->code, "bad_input");
  const Finished thrown = RunOne(executor, 2, &Throw, nullptr);
  ASSERT_NE(thrown.error, nullptr);
  EXPECT_EQ(thrown.error->code, "plugin_error");
  EXPECT_NE(thrown.error->message.find("escaped"), std::string::npos);
}

}  // namespace
}  // namespace umi
