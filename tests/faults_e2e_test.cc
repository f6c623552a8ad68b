// Fault injection through the real host: plugins that crash, hang or leak
// in worker processes (isolation: process), collectors and producers that
// come and go. Each task gets exactly one terminal result and the host
// keeps serving. (A host SIGKILLed under a retrying client is
// ScaleOut.KillingAHostLosesNothingOnceTheClientRetries.)
#include <gtest/gtest.h>

#include <signal.h>
#include <fstream>
#include <sstream>
#include <thread>
#include <filesystem>
#include <iomanip>
#include <set>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

// faulty and inspect, in worker processes.
std::string IsolatedConfig(const std::string& extra = "") {
  return TestConfigYaml(
             "  faulty: {isolation: process, processes: 1}\n"
             "  inspect: {isolation: process, processes: 0}\n") +
         extra;
}

HostProcess::Options Isolated(const std::string& extra = "") {
  return {.config_yaml = IsolatedConfig(extra), .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}};
}

// faulty in worker processes started on demand: the first task starts the
// only one, so each later task runs on it unless it was killed (a worker
// started beside it in the background could take the next task).
HostProcess::Options OnDemand(const std::string& settings = "") {
  return {.config_yaml = TestConfigYaml("  faulty: {isolation: process, processes: 0" +
                                        (settings.empty() ? "" : ", settings: {" + settings + "}") + "}\n"),
          .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}};
}

TaskSpec Faulty(const std::string& id, const std::string& mode, std::optional<int64_t> timeout_ms = {}) {
  return {.id = id, .plugin = "faulty", .string_input = {{"mode", mode}}, .timeout_ms = timeout_ms};
}

int64_t Pid(const Result& result) { return result.Output("pid")->as<int64_t>(); }

TEST(Faults, CrashingWorkersEndTheirTaskCrashedAndAreReplaced) {
  HostProcess host(Isolated());
  host.Send(PackTask(Faulty("first", "ok")));
  const Result first = host.NextResult();
  ASSERT_EQ(first.status, "ok") << first.error_message;
  EXPECT_NE(Pid(first), 0);

  const std::map<std::string, std::string> expected = {
      {"segv", "signal 11 (Segmentation fault)"}, {"abort", "signal 6 (Aborted)"}, {"exit", "exited with code 3"}};
  for (const auto& [mode, why] : expected) {
    host.Send(PackTask(Faulty(mode, mode)));
    const Result crashed = host.NextResult();
    EXPECT_EQ(crashed.id, mode);
    EXPECT_EQ(crashed.status, "crashed") << mode;
    EXPECT_EQ(crashed.error_code, "crashed");
    EXPECT_NE(crashed.error_message.find(why), std::string::npos) << crashed.error_message;
    EXPECT_TRUE(crashed.started_at.has_value());
  }
  // A fresh worker serves the next task.
  host.Send(PackTask(Faulty("after", "ok")));
  const Result after = host.NextResult();
  EXPECT_EQ(after.status, "ok");
  EXPECT_NE(Pid(after), Pid(first));
  // A plugin that throws in a worker is an error, and the worker lives on.
  host.Send(PackTask(Faulty("throws", "throw")));
  const Result thrown = host.NextResult();
  EXPECT_EQ(thrown.status, "error");
  EXPECT_NE(thrown.error_message.find("faulty threw as asked"), std::string::npos);
  host.Send(PackTask(Faulty("same", "ok")));
  EXPECT_EQ(Pid(host.NextResult()), Pid(after));
  EXPECT_EQ(host.Stop(), 0);
}

TEST(Faults, AHangingWorkerIsKilledAfterItsTimeoutAndItsResourcesFreed) {
  HostProcess host(Isolated());
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask(Faulty("hang", "hang", 200)));
  const Result hung = ParseResult(rpc.Receive());
  EXPECT_EQ(hung.status, "timeout");
  EXPECT_NE(hung.error_message.find("killed after the grace period"), std::string::npos) << hung.error_message;
  // Killed within the grace period (2 s) after the timeout.
  EXPECT_LT(*hung.finished_at - *hung.started_at, 0.2 + 2.0 + 1.0);
  rpc.Send(PackControl("stats"));
  const std::string reply = rpc.Receive();
  const msgpack::object_handle handle = msgpack::unpack(reply.data(), reply.size());
  const auto stats = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(stats.at("running").as<int>(), 0);
  const auto pool = stats.at("pool").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ((pool.at("cpu_threads").as<std::map<std::string, int>>().at("used")), 0);
  host.Send(PackTask(Faulty("next", "ok")));
  EXPECT_EQ(host.NextResult().status, "ok");
}

TEST(Faults, AWorkerThatLeaksPastItsMemoryGrantFailsAloneAndTheHostServes) {
  if (kSanitized) GTEST_SKIP() << "sanitizer builds reserve terabytes of shadow memory: no RLIMIT_AS there";
  HostProcess host(Isolated());
  host.Send(PackTask({.id = "leak", .plugin = "faulty", .input = {{"mb", 4096}}, .string_input = {{"mode", "leak"}}}));
  const Result leaked = host.NextResult();
  // 64 MiB granted (faulty's declared memory_mb): malloc fails well before 4 GiB.
  EXPECT_TRUE(leaked.status == "error" || leaked.status == "crashed") << leaked.status;
  if (leaked.status == "error") {
    EXPECT_EQ(leaked.error_code, "out_of_memory");
    EXPECT_NE(leaked.error_message.find("malloc failed after"), std::string::npos) << leaked.error_message;
  }
  host.Send(PackTask({.id = "small", .plugin = "faulty", .input = {{"mb", 16}}, .string_input = {{"mode", "leak"}}}));
  EXPECT_EQ(host.NextResult().status, "ok");
  EXPECT_EQ(host.Stop(), 0);
}

// The host's child processes, and which of them are zombies.
std::pair<std::set<pid_t>, std::set<pid_t>> Children(pid_t host) {
  std::set<pid_t> all, zombies;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...; comm may hold spaces: read after the last ')'.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    char state = 0;
    pid_t parent = 0;
    rest >> state >> parent;
    if (parent != host) continue;
    const pid_t pid = std::stoi(entry.path().filename().string());
    all.insert(pid);
    if (state == 'Z') zombies.insert(pid);
  }
  return {all, zombies};
}

TEST(Faults, IdleWorkersThatDieAreReapedReplacedAndNeverBlamedForATask) {
  HostProcess host(Isolated());
  host.Send(PackTask(Faulty("before", "ok")));
  const Result before = host.NextResult();
  ASSERT_EQ(before.status, "ok");
  const pid_t idle = static_cast<pid_t>(Pid(before));
  ASSERT_EQ(kill(idle, SIGKILL), 0);  // as the OOM killer would
  // Awaited by polling /proc: the host reaps it (no zombie) and starts another.
  const auto deadline = std::chrono::steady_clock::now() + kGuardTime;
  while (true) {
    const auto [children, zombies] = Children(host.pid());
    if (!children.count(idle) && !children.empty() && zombies.empty()) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the dead worker stayed a zombie or was not replaced";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Killed again; the tasks follow as soon as the workers' main threads are
  // dead, before the host has necessarily noticed (or could: a process is
  // waitable only when all its threads are gone).
  const auto [children, zombies] = Children(host.pid());
  for (pid_t worker : children) kill(worker, SIGKILL);
  for (pid_t worker : children) {
    while (true) {  // dead: a zombie, or already reaped
      std::ifstream stat("/proc/" + std::to_string(worker) + "/stat");
      std::string line;
      if (!std::getline(stat, line) || line[line.rfind(')') + 2] == 'Z') break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    }
  }
  for (int i = 0; i < 2; ++i) {
    host.Send(PackTask(Faulty("after-" + std::to_string(i), "ok")));
    const Result after = host.NextResult();
    ASSERT_EQ(after.status, "ok") << after.error_message;  // before: crashed, died of signal 9
    EXPECT_FALSE(children.count(static_cast<pid_t>(Pid(after))));
  }
  EXPECT_EQ(host.Stop(), 0);
}

// A plugin's setup may be slow (a model to load). The replacement for a
// dead idle worker sets up off the event loop: while it does, the host
// answers rpc (and, on a farm, renews its leases). Before, the loop waited
// in the spawn until the setup ended or timed out (30 s, the worker killed).
TEST(Faults, AWorkerSettingUpDoesNotHoldTheEventLoop) {
  TempDir dir;
  const std::filesystem::path hold = dir.path() / "hold-setup";
  HostProcess host({.config_yaml = TestConfigYaml("  faulty: {isolation: process, processes: 1, settings: "
                                                  "{hold_setup_while: \"" + hold.string() + "\"}}\n"),
                    .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
  host.Send(PackTask(Faulty("before", "ok")));
  const Result before = host.NextResult();
  ASSERT_EQ(before.status, "ok");
  const pid_t idle = static_cast<pid_t>(Pid(before));
  std::ofstream(hold).put('x');  // from now on a worker's setup waits
  ASSERT_EQ(kill(idle, SIGKILL), 0);
  pid_t replacement = -1;
  for (const auto deadline = std::chrono::steady_clock::now() + kGuardTime; replacement < 0;) {
    const auto [children, zombies] = Children(host.pid());
    for (const pid_t child : children) {
      if (child != idle && !zombies.count(child)) replacement = child;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no replacement worker was started";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("health"));
  EXPECT_FALSE(rpc.Receive().empty());
  const auto [children, zombies] = Children(host.pid());
  EXPECT_TRUE(children.count(replacement) && !zombies.count(replacement))
      << "answered only once the replacement's setup had timed out";
  std::filesystem::remove(hold);
  host.Send(PackTask(Faulty("after", "ok")));
  EXPECT_EQ(host.NextResult().status, "ok");
  EXPECT_EQ(host.Stop(), 0);
}

TEST(Faults, ACancelThatOvertakesItsTaskStillCancelsItInTheWorker) {
  HostProcess host(OnDemand());
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask(Faulty("first", "ok")));
  const pid_t worker = static_cast<pid_t>(Pid(ParseResult(rpc.Receive())));
  for (int i = 0; i < 30; ++i) {
    const std::string id = "wait-" + std::to_string(i);
    rpc.Send(PackTask(Faulty(id, "wait")));
    rpc.Send(PackControl("cancel", id));
    std::optional<Result> result;
    while (!result) {  // the cancel's own reply and the task's result, in either order
      const std::string reply = rpc.Receive();
      const Result parsed = ParseResult(reply);
      if (parsed.id == id) result = parsed;
    }
    EXPECT_EQ(result->status, "cancelled") << result->error_message;
    // The worker stopped the plugin itself: it was not killed after the grace period.
    rpc.Send(PackTask(Faulty("check-" + std::to_string(i), "ok")));
    EXPECT_EQ(Pid(ParseResult(rpc.Receive())), worker) << "the worker was killed on round " << i;
  }
  EXPECT_EQ(host.Stop(), 0);
}

// A task frame too big to write from the event loop (over 64 KiB) goes to
// a worker from a thread; small ones the loop hands over itself. Either way
// the same worker serves them, whole.
TEST(Faults, ABigTaskAndSmallOnesRunOnTheSameWorkerWhicheverWayTheyAreHandedOver) {
  HostProcess host(OnDemand());
  host.Send(PackTask(Faulty("small", "ok")));
  const Result small = host.NextResult();
  ASSERT_EQ(small.status, "ok") << small.error_message;
  const std::string blob(200 * 1024, 'x');
  host.Send(PackTask({.id = "big", .plugin = "faulty", .string_input = {{"mode", "echo"}, {"blob", blob}}}));
  const Result big = host.NextResult();
  ASSERT_EQ(big.status, "ok") << big.error_message;
  EXPECT_EQ(Pid(big), Pid(small));
  const msgpack::object* echoed = big.Output("input");
  ASSERT_TRUE(echoed);
  using Fields = std::map<std::string, msgpack::object>;
  EXPECT_EQ(echoed->as<Fields>().at("blob").as<std::string>(), blob);
  host.Send(PackTask(Faulty("small-again", "ok")));
  EXPECT_EQ(Pid(host.NextResult()), Pid(small));
  EXPECT_EQ(host.Stop(), 0);
}

// The worker's cancel signal (SIGURG) is handed on to a handler the plugin
// set up for itself (a Go runtime's), and the cancel still stops the task
// in the worker.
TEST(Faults, APluginsOwnHandlerOfTheCancelSignalStillRunsAndTheCancelStillWorks) {
  HostProcess host(OnDemand("count_sigurg: \"yes\""));
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask(Faulty("first", "ok")));
  const pid_t worker = static_cast<pid_t>(Pid(ParseResult(rpc.Receive())));
  rpc.Send(PackTask(Faulty("waits", "wait")));
  rpc.Send(PackControl("cancel", "waits"));
  std::optional<Result> cancelled;
  while (!cancelled) {  // the cancel's own reply and the task's result, in either order
    const Result parsed = ParseResult(rpc.Receive());
    if (parsed.id == "waits") cancelled = parsed;
  }
  EXPECT_EQ(cancelled->status, "cancelled") << cancelled->error_message;
  rpc.Send(PackTask(Faulty("count", "sigurgs")));
  const Result counted = ParseResult(rpc.Receive());
  EXPECT_EQ(Pid(counted), worker) << "the worker stopped the task itself: it was not killed";
  EXPECT_GE(counted.Output("sigurgs")->as<int64_t>(), 1);
  EXPECT_EQ(host.Stop(), 0);
}

TEST(Faults, AnIsolatedTaskRunsOnExactlyItsGrantedCpus) {
  HostProcess host({.config_yaml = "hardware:\n  cpu: {cores: 1, threads: 2, pinning: true}\n  memory: {total_gb: 1}\n"
                                   "plugins:\n  inspect: {isolation: process}\n",
                    .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
  host.Send(PackTask({.id = "pinned", .plugin = "inspect"}));
  const Result r = host.NextResult();
  ASSERT_EQ(r.status, "ok") << r.error_message;
  const auto cpus = r.Output("cpus")->as<std::vector<int>>();
  EXPECT_EQ(cpus.size(), 2u);  // inspect asks for 2 threads: both logical CPUs of the grant
}

// A result in flight to a collector that vanishes is lost with its TCP
// connection (ZeroMQ PUSH has no acknowledgements): the producer's retry is
// what makes delivery certain, and the dedup window makes it safe: the task
// does not run again, its stored result is sent again.
TEST(Faults, ACollectorThatGoesAwayLosesNothingOnceTheProducerRetries) {
  HostProcess host({.connect_harness = false});
  zmq::socket_t producer(host.context(), zmq::socket_type::push);
  producer.connect(host.endpoint("tasks"));
  std::map<std::string, double> started;  // id -> started_at
  {
    zmq::socket_t collector(host.context(), zmq::socket_type::pull);
    collector.set(zmq::sockopt::linger, 0);
    collector.connect(host.endpoint("results"));
    for (int i = 0; i < 50; ++i) producer.send(zmq::buffer(PackTask({.id = "a" + std::to_string(i), .plugin = "noop"})));
    for (int i = 0; i < 50; ++i) {
      zmq::message_t message;
      ASSERT_TRUE(collector.recv(message));
      const Result r = ParseResult(message.to_string());
      started[*r.id] = *r.started_at;
    }
  }  // the collector disconnects
  for (int i = 0; i < 50; ++i) producer.send(zmq::buffer(PackTask({.id = "b" + std::to_string(i), .plugin = "noop"})));
  zmq::socket_t again(host.context(), zmq::socket_type::pull);
  again.connect(host.endpoint("results"));
  RpcClient rpc(host.context(), host.endpoint("rpc"));

  // The retry, over rpc, until every task has its answer there. A task still
  // queued or running when its retry arrives is refused as a duplicate; it
  // is retried again.
  std::set<std::string> answered;
  for (int round = 0; answered.size() < 100 && round < 100; ++round) {
    int sent = 0;
    for (const char* prefix : {"a", "b"}) {
      for (int i = 0; i < 50; ++i) {
        const std::string id = prefix + std::to_string(i);
        if (answered.count(id)) continue;
        rpc.Send(PackTask({.id = id, .plugin = "noop"}));
        ++sent;
      }
    }
    for (int i = 0; i < sent; ++i) {
      const Result r = ParseResult(rpc.Receive());
      if (r.error_code == "duplicate_id") continue;
      ASSERT_EQ(r.status, "ok") << *r.id << ": " << r.error_message;
      answered.insert(*r.id);
      const auto first = started.find(*r.id);
      if (first != started.end()) {
        EXPECT_EQ(first->second, *r.started_at) << *r.id << " ran twice";
      }
      started.emplace(*r.id, *r.started_at);
    }
  }
  // Whatever reached the new collector is the same single run.
  zmq::message_t message;
  while (again.recv(message, zmq::recv_flags::dontwait)) {
    const Result r = ParseResult(message.to_string());
    // (A copy read while its twin ran was refused: duplicate_id, no run.)
    if (r.status == "ok" && started.count(*r.id)) {
      EXPECT_EQ(started[*r.id], *r.started_at) << *r.id << " ran twice: " << std::setprecision(17) << started[*r.id] << " vs " << *r.started_at << " " << r.status << " " << r.error_code;
    }
  }
  EXPECT_EQ(answered.size(), 100u);
}

TEST(Faults, AProducerThatVanishesMidStreamLeavesEveryAcceptedTaskAnswered) {
  HostProcess host;
  {
    zmq::socket_t producer(host.context(), zmq::socket_type::push);
    producer.set(zmq::sockopt::linger, 0);  // what is still queued on its side is lost with it
    producer.connect(host.endpoint("tasks"));
    for (int i = 0; i < 2000; ++i) {
      producer.send(zmq::buffer(PackTask({.id = "p" + std::to_string(i), .plugin = "noop"})), zmq::send_flags::dontwait);
    }
  }
  // Whatever the host accepted, it answers exactly once; count it by stats
  // after a fence on the rpc socket.
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("stats"));
  rpc.Receive();
  std::set<std::string> ids;
  host.Send(PackTask({.id = "still-serving", .plugin = "noop"}));
  while (!ids.count("still-serving")) {
    const Result r = host.NextResult();
    EXPECT_EQ(r.status, "ok");
    EXPECT_TRUE(ids.insert(*r.id).second) << "duplicate " << *r.id;
  }
  rpc.Send(PackControl("stats"));
  const std::string reply = rpc.Receive();
  const msgpack::object_handle handle = msgpack::unpack(reply.data(), reply.size());
  const auto stats = handle.get().as<std::map<std::string, msgpack::object>>();
  // Results may still be arriving for tasks the host read after the fence.
  const int done = stats.at("done").as<std::map<std::string, int>>().at("ok");
  while (static_cast<int>(ids.size()) < done) EXPECT_TRUE(ids.insert(*host.NextResult().id).second);
  EXPECT_EQ(static_cast<int>(ids.size()), done);
}

}  // namespace
}  // namespace umi::testing
