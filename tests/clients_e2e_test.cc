// Producers other than the harness: umi-submit, the Python example, the C++
// client, and scale-out of several hosts behind one producer.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <umi/client.hpp>

#include <map>
#include <set>
#include <fstream>
#include <sstream>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

using std::chrono::milliseconds;

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// --rpc takes one value, so the file may follow it; a bad endpoint is a
// usage error with the reason, never an abort.
TEST(UmiSubmit, TheFileMayFollowRpcAndABadEndpointIsAClearError) {
  HostProcess host;
  TempDir dir;
  const auto input = dir.Write("tasks.jsonl", R"({"id": "after-flag", "plugin": "noop"})" "\n");
  const CommandOutput run = RunCommand({UMI_SUBMIT_BINARY, "--rpc", host.endpoint("rpc"), input.string()});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find(R"("id":"after-flag")"), std::string::npos) << run.out;

  const CommandOutput bad = RunCommand({UMI_SUBMIT_BINARY, "--rpc", "bogus://x", input.string()}, true);
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_NE(bad.out.find("umi-submit: cannot use the endpoints given (--rpc bogus://x"), std::string::npos) << bad.out;
}

TEST(UmiSubmit, SendsJsonLinesAndWritesOneResultEach) {
  HostProcess host;
  TempDir dir;
  const auto input = dir.Write("tasks.jsonl", R"({"id": "a", "plugin": "sleep", "input": {"ms": 5}}
{"plugin": "noop"}

{"id": "c", "plugin": "no_such_plugin"}
)");
  const CommandOutput run = RunCommand({UMI_SUBMIT_BINARY, input.string(), "--rpc", host.endpoint("rpc")});
  EXPECT_EQ(run.exit_code, 1) << "one task was rejected";
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& line : JsonLines(run.out)) by_id[line["id"]] = line;
  ASSERT_EQ(by_id.size(), 3u) << run.out;
  EXPECT_EQ(by_id["a"]["status"], "ok");
  EXPECT_EQ(by_id["a"]["allocation"]["cpu_threads"], 4);
  std::string made;  // the id made from the run and the line number
  for (const auto& [id, line] : by_id) {
    if (id != "a" && id != "c") made = id;
  }
  EXPECT_TRUE(made.size() > 2 && made.substr(made.size() - 2) == "-2") << made;
  EXPECT_EQ(by_id[made]["status"], "ok");
  EXPECT_EQ(by_id["c"]["error"]["code"], "unknown_plugin");
}

TEST(UmiSubmit, TwoRunsOfTheSameLinesAreTwoTasks) {
  HostProcess host;
  TempDir dir;
  const auto first = dir.Write("first.jsonl", R"({"plugin": "sleep", "input": {"ms": 1}})" "\n");
  const auto second = dir.Write("second.jsonl", R"({"plugin": "sleep", "input": {"ms": 3}})" "\n");
  const CommandOutput one = RunCommand({UMI_SUBMIT_BINARY, first.string(), "--rpc", host.endpoint("rpc")});
  const CommandOutput two = RunCommand({UMI_SUBMIT_BINARY, second.string(), "--rpc", host.endpoint("rpc")});
  ASSERT_EQ(one.exit_code, 0) << one.out;
  ASSERT_EQ(two.exit_code, 0) << two.out;  // before: the first run's result, counted as a retry
  EXPECT_NE(JsonLines(one.out)[0]["id"], JsonLines(two.out)[0]["id"]);
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("stats"));
  const auto stats = nlohmann::json::from_msgpack(rpc.Receive());
  EXPECT_EQ(stats["deduplicated"], 0);
  EXPECT_EQ(stats["done"]["ok"], 2);
}

TEST(UmiSubmit, OutputWithInvalidUtf8IsWrittenNotFatal) {
  HostProcess host({.plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR}});
  TempDir dir;
  const auto input = dir.Write("bytes.jsonl", R"({"id": "b", "plugin": "faulty", "input": {"mode": "bad_utf8"}})" "\n"
                                              R"({"id": "n", "plugin": "noop"})" "\n");
  const CommandOutput run = RunCommand({UMI_SUBMIT_BINARY, input.string(), "--rpc", host.endpoint("rpc")});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  const auto lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 2u) << run.out;
  for (const auto& line : lines) {
    if (line["id"] == "b") {
      EXPECT_EQ(line["output"]["text"], "ok \xEF\xBF\xBD\xEF\xBF\xBD");
    }
  }
}

TEST(UmiSubmit, ExitsZeroWhenAllSucceed) {
  HostProcess host;
  TempDir dir;
  const auto input = dir.Write("ok.jsonl", "{\"plugin\": \"noop\"}\n{\"plugin\": \"noop\"}\n");
  EXPECT_EQ(RunCommand({UMI_SUBMIT_BINARY, input.string(), "--rpc", host.endpoint("rpc")}).exit_code, 0);
}

TEST(UmiSubmit, ABadLineEndsTheInputAndWhatCameBeforeItIsAnswered) {
  HostProcess host;
  TempDir dir;
  const auto input = dir.Write("bad.jsonl", "{\"plugin\": \"noop\"}\n{\"plugin\": 7}\n{\"plugin\": \"noop\"}\n");
  const CommandOutput run =
      RunCommand({UMI_SUBMIT_BINARY, input.string(), "--rpc", host.endpoint("rpc")}, /*merge_stderr=*/true);
  EXPECT_EQ(run.exit_code, 2);
  // Input is streamed: the line before the bad one was sent and answered, the one after never read.
  EXPECT_NE(run.out.find("\"status\":\"ok\""), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(input.string() + ":2: \"plugin\" (a string) is required (the 1 task(s) before it were sent "
                                          "and answered)"),
            std::string::npos)
      << run.out;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("stats"));
  EXPECT_EQ(nlohmann::json::from_msgpack(rpc.Receive())["done"]["ok"], 1) << "one task ran";
}

// A valid JSON line nested 100,000 deep (200 KB) is a bad line like any
// other, with the same limit as python3 -m umi. Before: SIGSEGV (the parser
// recursed off the stack), and the good line's result was never written.
TEST(UmiSubmit, ALineNestedTooDeepIsABadLineAndWhatCameBeforeItIsAnswered) {
  HostProcess host;
  TempDir dir;
  const auto input = dir.Write("deep.jsonl", "{\"plugin\": \"noop\"}\n{\"plugin\": \"noop\", \"input\": {\"x\": " +
                                                 std::string(100000, '[') + std::string(100000, ']') + "}}\n");
  const CommandOutput run =
      RunCommand({UMI_SUBMIT_BINARY, input.string(), "--rpc", host.endpoint("rpc")}, /*merge_stderr=*/true);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_NE(run.out.find("\"status\":\"ok\""), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(input.string() + ":2: arrays and objects nested deeper than 64 levels"), std::string::npos)
      << run.out;
}

TEST(UmiSubmit, OpStatsPrintsTheReplyAsJson) {
  HostProcess host;
  const CommandOutput run = RunCommand({UMI_SUBMIT_BINARY, "--op", "stats", "--rpc", host.endpoint("rpc")});
  EXPECT_EQ(run.exit_code, 0);
  const auto stats = nlohmann::json::parse(run.out);
  EXPECT_EQ(stats["ok"], true);
  EXPECT_EQ(stats["pool"]["cpu_threads"]["total"], 48);
}

TEST(PythonProducer, RunsAgainstTheRealHost) {
  HostProcess host;
  const CommandOutput run = RunCommand({"/usr/bin/python3", UMI_SOURCE_DIR "/examples/python/producer.py", "--rpc",
                                        host.endpoint("rpc"), "--count", "5", "--ms", "10"});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  std::set<std::string> ids;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_NE(line.find(" sleep ok host=test-host"), std::string::npos) << line;
    ids.insert(line.substr(0, line.find(' ')));
  }
  EXPECT_EQ(ids, (std::set<std::string>{"py-0", "py-1", "py-2", "py-3", "py-4"}));
}

// Any plugin with any input, and the endpoint from the host's ready line.
TEST(PythonProducer, TakesAnInputMapAndTheEndpointFromTheReadyLine) {
  HostProcess host;
  TempDir dir;
  const auto ready = dir.Write("ready.json", R"({"ready":true,"rpc":")" + host.endpoint("rpc") + "\"}\n");
  const CommandOutput run = RunCommand({"/usr/bin/python3", UMI_SOURCE_DIR "/examples/python/producer.py", "--ready",
                                        ready.string(), "--plugin", "sleep", "--input", R"({"ms": -1})", "--count", "1"});
  EXPECT_EQ(run.exit_code, 1) << "the task failed, as its input asked";
  EXPECT_NE(run.out.find("py-0 sleep error host=test-host 'ms' must be >= 0"), std::string::npos) << run.out;

  const CommandOutput bad = RunCommand({"/usr/bin/python3", UMI_SOURCE_DIR "/examples/python/producer.py", "--input",
                                        "[1, 2]"},
                                       true);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.out.find("--input must be a JSON object"), std::string::npos) << bad.out;
}

TEST(DemoProducer, RunsBothWorkloadsAndDrawsTheTimeline) {
  HostProcess host({.connect_harness = false});
  TempDir dir;
  const std::string svg = (dir.path() / "timeline.svg").string();
  const CommandOutput run = RunCommand({UMI_PRODUCER_BINARY, "--tasks", host.endpoint("tasks"), "--results",
                                        host.endpoint("results"), "--time-scale", "0.02", "--timeline", svg});
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("workload cpu: 7 tasks"), std::string::npos);
  EXPECT_NE(run.out.find("workload mixed: 9 tasks"), std::string::npos);
  std::ifstream file(svg);
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  size_t bars = 0, gpu_bars = 0;
  for (size_t at = text.find("class=\"task\""); at != std::string::npos; at = text.find("class=\"task\"", at + 1)) {
    ++bars;
    gpu_bars += text.compare(text.find("fill=", at), 14, "fill=\"#e8892b\"") == 0;
  }
  EXPECT_EQ(bars, 16u);
  EXPECT_EQ(gpu_bars, 3u);
}

TEST(CppClient, SubmitsAndAwaitsOverRpc) {
  HostProcess host;
  zmq::context_t context;
  Client client(context, {.rpc = {host.endpoint("rpc")}});
  client.Submit({.id = "one", .plugin = "sleep", .input = PackMap({{"ms", 5}})});
  client.Submit({.id = "two", .plugin = "noop"});
  const auto two = client.Await("two", milliseconds(60000));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status, "ok");
  const auto one = client.Next(milliseconds(60000));
  ASSERT_TRUE(one);
  EXPECT_EQ(one->id, "one");
  EXPECT_EQ(one->host, "test-host");
  EXPECT_EQ(client.pending(), 0u);
  const auto health = client.Control("health", milliseconds(60000));
  ASSERT_TRUE(health);
  EXPECT_EQ(nlohmann::json::from_msgpack(*health)["status"], "serving");
}

TEST(CppClient, ATasksRetryPolicyAndALookupById) {
  HostProcess host;
  zmq::context_t context;
  Client client(context, {.rpc = {host.endpoint("rpc")}});
  client.Submit({.id = "policy", .plugin = "noop", .retry = PackMap({{"attempts", 3}, {"backoff_ms", 10}})});
  const auto done = client.Await("policy", milliseconds(60000));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, "ok");
  EXPECT_EQ(nlohmann::json::from_msgpack(done->result)["attempts"], 1) << "a task with a policy says how often it ran";
  const auto lookup = client.Control("result", milliseconds(60000), "policy");
  ASSERT_TRUE(lookup);
  const nlohmann::json found = nlohmann::json::from_msgpack(*lookup);
  EXPECT_EQ(found["state"], "finished");
  EXPECT_EQ(found["result"]["id"], "policy");
}

TEST(CppClient, GivesUpWithNoResultWhenNoHostAnswers) {
  zmq::context_t context;
  Client client(context, {.tasks = "@tcp://127.0.0.1:*", .results = "@tcp://127.0.0.1:*",
                          .retry_after = milliseconds(20), .max_attempts = 2});
  client.Submit({.id = "lonely", .plugin = "noop"});
  const auto outcome = client.Next(milliseconds(60000));
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->error_code, "no_result");
  EXPECT_EQ(outcome->attempts, 2);
}

// A task queued behind others for longer than retry_after x max_attempts
// is not given up: each retry meets the host saying "still queued"
// (duplicate_id), which starts the count again. Before, those answers used
// up the attempts: 3 of these 4 tasks ended no_result while the host later
// ran all 4 and dropped their results.
TEST(CppClient, ATaskQueuedLongerThanItsAttemptsStillGetsItsResult) {
  std::string yaml = TestConfigYaml();
  const std::string plain = "sleep: {task_group: cpu_task}";
  HostProcess host({.config_yaml = yaml.replace(yaml.find(plain), plain.size(),
                                                "sleep: {task_group: cpu_task, max_instances: 1}")});
  zmq::context_t context;
  Client client(context, {.rpc = {host.endpoint("rpc")}, .retry_after = milliseconds(100), .max_attempts = 2});
  for (int i = 0; i < 4; ++i) client.Submit({.id = "q" + std::to_string(i), .plugin = "sleep", .input = PackMap({{"ms", 300}})});
  for (int i = 0; i < 4; ++i) {
    const auto outcome = client.Next(milliseconds(60000));
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->status, "ok") << outcome->id << ": " << outcome->error_code << " " << outcome->error_message;
  }
}

// N hosts connect to one producer's bound PUSH and one collector's bound PULL.
class ScaleOut : public ::testing::Test {
 protected:
  ScaleOut()
      : client_(context_, {.tasks = "@tcp://127.0.0.1:*", .results = "@tcp://127.0.0.1:*",
                           .retry_after = milliseconds(1500), .max_attempts = 5}) {}

  std::unique_ptr<HostProcess> StartHost(const std::string& name) {
    return std::make_unique<HostProcess>(HostProcess::Options{
        .config_yaml = R"(hardware:
  cpu: {cores: 2, threads: 2, max_concurrent_tasks: 2}
  memory: {total_gb: 4}
scheduler: {max_queued: 2}
transport: {tasks_hwm: 2}
)",
        .tasks_endpoint = ">" + client_.tasks_endpoint(),
        .results_endpoint = ">" + client_.results_endpoint(),
        .name = name});
  }

  zmq::context_t context_;
  Client client_;
};

TEST_F(ScaleOut, ThreeHostsShareOneStreamAndEachTaskGetsOneResult) {
  std::vector<std::unique_ptr<HostProcess>> hosts;
  for (const char* name : {"host-a", "host-b", "host-c"}) hosts.push_back(StartHost(name));
  ASSERT_TRUE(client_.WaitForHosts(3, milliseconds(60000)));
  const int tasks = 60;
  for (int i = 0; i < tasks; ++i) {
    client_.Submit({.id = "t" + std::to_string(i), .plugin = "sleep", .input = PackMap({{"ms", 20}})});
  }
  std::map<std::string, int> per_host;
  std::set<std::string> ids;
  for (int i = 0; i < tasks; ++i) {
    const auto outcome = client_.Next(milliseconds(60000));
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome->status, "ok") << outcome->error_message;
    EXPECT_TRUE(ids.insert(outcome->id).second) << "two results for " << outcome->id;
    ++per_host[outcome->host];
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(tasks));
  EXPECT_EQ(per_host.size(), 3u) << "every host took work";
  for (auto& host : hosts) EXPECT_EQ(host->Stop(), 0);
}

TEST_F(ScaleOut, KillingAHostLosesNothingOnceTheClientRetries) {
  auto victim = StartHost("victim");
  auto survivor = StartHost("survivor");
  ASSERT_TRUE(client_.WaitForHosts(2, milliseconds(60000)));
  const int tasks = 20;
  for (int i = 0; i < tasks; ++i) {
    client_.Submit({.id = "k" + std::to_string(i), .plugin = "sleep", .input = PackMap({{"ms", 300}})});
  }
  // Once both hosts have answered something, the victim holds work in flight.
  std::set<std::string> hosts_seen;
  std::set<std::string> ids;
  while (hosts_seen.size() < 2) {
    const auto outcome = client_.Next(milliseconds(60000));
    ASSERT_TRUE(outcome);
    hosts_seen.insert(outcome->host);
    ids.insert(outcome->id);
  }
  kill(victim->pid(), SIGKILL);
  while (ids.size() < static_cast<size_t>(tasks)) {
    const auto outcome = client_.Next(milliseconds(60000));
    ASSERT_TRUE(outcome) << ids.size() << " of " << tasks;
    EXPECT_EQ(outcome->status, "ok") << outcome->id << ": " << outcome->error_message;
    EXPECT_TRUE(ids.insert(outcome->id).second) << "two results for " << outcome->id;
  }
  EXPECT_EQ(client_.pending(), 0u);
  EXPECT_EQ(survivor->Stop(), 0);
}

}  // namespace
}  // namespace umi::testing
