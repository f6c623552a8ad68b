// A farm of real umi-host processes on a real redis-server (Redis Streams
// transport): hosts pull only what they can run, a killed host's tasks run
// elsewhere, bad entries are answered and acknowledged, a poison task ends.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <umi/redis_client.hpp>

#include "support/host_process.h"
#include "support/redis_server.h"

namespace umi::testing {
namespace {

// A CPU-only pool: gpu_sleep cannot run here, so this host never reads its stream.
std::string CpuOnlyYaml() {
  return R"(hardware:
  cpu: {cores: 24, threads: 48, max_concurrent_tasks: 8}
  memory: {total_gb: 128}
plugins:
  sleep: {threads: 1}
)";
}

TEST(Farm, HostsTakeOnlyWhatTheyCanRunAndEveryTaskEndsOkOnce) {
  RedisServer redis;
  HostProcess gpu_host(FarmHost(redis, "gpu-host"));
  HostProcess cpu_host(FarmHost(redis, "cpu-host", CpuOnlyYaml()));
  RedisClient producer(redis.url());
  std::set<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    const std::string id = "gpu-" + std::to_string(i);
    producer.Submit("gpu_sleep", PackTask({.id = id, .plugin = "gpu_sleep", .input = {{"ms", 20}}}));
    ids.insert(id);
  }
  for (int i = 0; i < 24; ++i) {
    const std::string id = "cpu-" + std::to_string(i);
    producer.Submit("sleep", PackTask({.id = id, .plugin = "sleep", .input = {{"ms", 20}}}));
    ids.insert(id);
  }
  std::map<std::string, std::string> host_of;
  for (const Result& r : producer.Results(ids.size())) {
    ASSERT_TRUE(r.id.has_value());
    EXPECT_EQ(r.status, "ok") << *r.id << ": " << r.error_code << " " << r.error_message;
    EXPECT_TRUE(host_of.emplace(*r.id, r.host).second) << "two results for " << *r.id;
  }
  EXPECT_EQ(host_of.size(), ids.size());
  for (const auto& [id, host] : host_of) {
    if (id.rfind("gpu-", 0) == 0) {
      EXPECT_EQ(host, "gpu-host") << id << " ran on a host without a GPU";
    }
  }
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
  EXPECT_EQ(producer.Pending("umi:tasks:gpu_sleep"), 0);
}

// Duplicate ids are farm-wide: a second submission of an id one host
// answered, read by another host, gets the stored result without running
// again; the same id with other content is a conflict.
TEST(Farm, AnIdOneHostAnsweredIsAnsweredByAnotherFromRedisAndOtherContentConflicts) {
  RedisServer redis;
  RedisClient producer(redis.url());
  const std::string task = PackTask({.id = "once", .plugin = "sleep", .input = {{"ms", 5}}});
  auto first = std::make_unique<HostProcess>(FarmHost(redis, "first"));
  producer.Submit("sleep", task);
  const Result ran = producer.Results(1).at(0);
  ASSERT_EQ(ran.status, "ok") << ran.error_message;
  first.reset();  // drained and gone: only Redis remembers

  HostProcess second(FarmHost(redis, "second"));
  producer.Submit("sleep", task);
  producer.Submit("sleep", PackTask({.id = "once", .plugin = "sleep", .input = {{"ms", 6}}}));
  std::map<std::string, Result> by_status;
  for (const Result& r : producer.Results(2)) by_status[r.status] = r;
  EXPECT_EQ(by_status["ok"].host, "first") << "the stored result, not a second run";
  EXPECT_EQ(by_status["ok"].started_at, ran.started_at);
  EXPECT_EQ(by_status["rejected"].error_code, "id_conflict");
  EXPECT_EQ(MetricValue(second, "umi_deduplicated_tasks_total"), 1);
}

// Entries that every group delivered and nobody has pending are trimmed at
// a heartbeat, so a stream's memory stays bounded however many tasks pass.
TEST(Farm, DoneEntriesAreTrimmedFromTaskStreams) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "trimmer"));
  RedisClient producer(redis.url());
  for (int i = 0; i < 30; ++i) {
    producer.Submit("sleep", PackTask({.id = "d" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 1}}}));
  }
  for (const Result& r : producer.Results(30)) EXPECT_EQ(r.status, "ok") << r.error_message;
  // No event says "trimmed": read the length until it drops, within a bound.
  long long length = 30;
  for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       length > 1 && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    length = producer.Command({"XLEN", "umi:tasks:sleep"})->integer;
  }
  EXPECT_LE(length, 1) << "the last delivered entry may stay; the rest are done";
}

TEST(Farm, AKilledHostsTasksAreClaimedByALiveHostAndRunOnce) {
  RedisServer redis;
  RedisClient producer(redis.url());
  auto doomed = std::make_unique<HostProcess>(FarmHost(redis, "doomed"));
  EventsClient events(doomed->context(), doomed->endpoint("events"));
  AwaitSubscription(*doomed, events);
  for (int i = 0; i < 4; ++i) {
    producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  AwaitStarted(events, 4);
  kill(doomed->pid(), SIGKILL);
  waitpid(doomed->pid(), nullptr, 0);
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 4) << "the dead host's entries wait in Redis";

  HostProcess survivor(FarmHost(redis, "survivor"));
  std::set<std::string> seen;
  for (const Result& r : producer.Results(4)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    EXPECT_EQ(r.host, "survivor");
    EXPECT_TRUE(seen.insert(r.id.value_or("")).second) << "one result per id";
  }
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
}

// A host killed and started again under the same name before its heartbeat
// expired (systemd's Restart=, a StatefulSet pod): no other host would claim
// its entries, so the new run takes back what the earlier one left pending.
TEST(Farm, AHostRestartedUnderItsNameRunsWhatItsEarlierRunTook) {
  RedisServer redis;
  RedisClient producer(redis.url());
  auto first = std::make_unique<HostProcess>(FarmHost(redis, "phoenix"));
  EventsClient events(first->context(), first->endpoint("events"));
  AwaitSubscription(*first, events);
  for (int i = 0; i < 3; ++i) {
    producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  AwaitStarted(events, 3);
  kill(first->pid(), SIGKILL);
  waitpid(first->pid(), nullptr, 0);
  HostProcess again(FarmHost(redis, "phoenix"));
  std::set<std::string> seen;
  for (const Result& r : producer.Results(3)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    EXPECT_TRUE(seen.insert(r.id.value_or("")).second) << "one result per id";
  }
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
}

TEST(Farm, BadEntriesAreAnsweredAcknowledgedAndTheHostServesOn) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "h"));
  RedisClient producer(redis.url());
  producer.Submit("sleep", "not msgpack at all");
  producer.Submit("sleep", PackTask({.id = "wrong", .plugin = "noop"}));
  producer.Submit("sleep", PackTask({.id = "no-m", .plugin = "sleep"}), /*field=*/"x");
  const std::vector<Result> bad = producer.Results(3);
  for (const Result& r : bad) {
    EXPECT_EQ(r.status, "rejected");
    EXPECT_EQ(r.error_code, "bad_request") << r.error_message;
  }
  EXPECT_EQ(bad[1].id, "wrong");
  EXPECT_NE(bad[1].error_message.find("a task for plugin 'noop' in stream umi:tasks:sleep"), std::string::npos)
      << bad[1].error_message;
  EXPECT_NE(bad[2].error_message.find("no field 'm'"), std::string::npos) << bad[2].error_message;
  producer.Submit("sleep", PackTask({.id = "good", .plugin = "sleep", .input = {{"ms", 1}}}));
  EXPECT_EQ(producer.Results(1).front().status, "ok");
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0) << "every entry acknowledged";
}

TEST(Farm, APoisonTaskEndsAfterMaxDeliveries) {
  RedisServer redis;
  RedisClient producer(redis.url());
  const std::string yaml = TestConfigYaml() + "transport: {max_deliveries: 1}\n";
  auto options = FarmHost(redis, "first", yaml);
  options.plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR};
  auto first = std::make_unique<HostProcess>(options);
  producer.Submit("faulty", PackTask({.id = "poison", .plugin = "faulty", .string_input = {{"mode", "exit"}}}));
  int status = 0;
  waitpid(first->pid(), &status, 0);  // the plugin takes its host down
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3);

  options.name = "second";
  HostProcess second(options);
  const Result r = producer.Results(1).front();
  EXPECT_EQ(r.id, "poison");
  EXPECT_EQ(r.status, "crashed");
  EXPECT_EQ(r.error_code, "max_deliveries") << r.error_message;
  EXPECT_EQ(ReplyText(producer.Command({"XLEN", "umi:dead:faulty"}).get()), "");
  EXPECT_EQ(producer.Command({"XLEN", "umi:dead:faulty"})->integer, 1) << "kept for a person to look at";
  EXPECT_EQ(producer.Pending("umi:tasks:faulty"), 0);
}

TEST(Farm, ADrainedHostLeavesNothingPendingAndSaysItIsGone) {
  RedisServer redis;
  RedisClient producer(redis.url());
  HostProcess host(FarmHost(redis, "leaving"));
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  for (int i = 0; i < 3; ++i) {
    producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 200}}}));
  }
  AwaitStarted(events, 3);
  EXPECT_EQ(host.Stop(), 0);
  for (const Result& r : producer.Results(3)) EXPECT_EQ(r.status, "ok") << r.error_message;
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
  EXPECT_EQ(producer.Command({"EXISTS", "umi:hosts:leaving"})->integer, 0);
}

TEST(Farm, UmiSubmitSendsToTheFarmAndPrintsOneResultPerTask) {
  RedisServer redis;
  HostProcess gpu_host(FarmHost(redis, "gpu-host"));
  HostProcess cpu_host(FarmHost(redis, "cpu-host", CpuOnlyYaml()));
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 10; ++i) lines += R"({"id":"s)" + std::to_string(i) + R"(","plugin":"sleep","input":{"ms":5}})" "\n";
  lines += R"({"id":"g","plugin":"gpu_sleep","input":{"ms":5}})" "\n";
  const auto file = dir.Write("tasks.jsonl", lines);
  const CommandOutput out = RunCommand({UMI_SUBMIT_BINARY, "--redis", redis.url(), "--quiet", file.string()});
  EXPECT_EQ(out.exit_code, 0) << out.out;
  std::set<std::string> ids;
  std::istringstream results(out.out);
  for (std::string line; std::getline(results, line);) {
    EXPECT_NE(line.find(R"("status":"ok")"), std::string::npos) << line;
    const size_t at = line.find(R"("id":")");
    ASSERT_NE(at, std::string::npos) << line;
    ids.insert(line.substr(at + 6, line.find('"', at + 6) - at - 6));
  }
  EXPECT_EQ(ids.size(), 11u) << out.out;
  RedisClient client(redis.url());
  EXPECT_EQ(client.Command({"KEYS", "umi:results:*"})->elements, 0u) << "the run's result stream is deleted";

  // The cluster view: both hosts with their plugins, and the streams' backlog.
  client.Submit("gpu_sleep", PackTask({.id = "queued-behind", .plugin = "gpu_sleep", .input = {{"ms", 1}}}));
  const CommandOutput view = RunCommand({UMI_SUBMIT_BINARY, "--redis", redis.url(), "--op", "cluster"});
  ASSERT_EQ(view.exit_code, 0) << view.out;
  const auto cluster = nlohmann::json::parse(view.out);
  ASSERT_EQ(cluster["hosts"].size(), 2u) << view.out;
  EXPECT_EQ(cluster["hosts"][0]["name"], "cpu-host");
  EXPECT_EQ(cluster["hosts"][0]["plugins"].get<std::string>().find("gpu_sleep"), std::string::npos)
      << "a CPU-only host does not offer gpu_sleep";
  EXPECT_NE(cluster["hosts"][1]["plugins"].get<std::string>().find("gpu_sleep"), std::string::npos);
  EXPECT_NE(cluster["hosts"][1]["cpu_threads"].get<std::string>().find("/48"), std::string::npos) << view.out;
  EXPECT_LE(cluster["plugins"]["sleep"]["length"], 10) << "done entries are trimmed at a heartbeat";
  EXPECT_EQ(cluster["plugins"]["sleep"]["pending"], 0);
  EXPECT_EQ(cluster["plugins"]["sleep"]["waiting"], 0);
  EXPECT_TRUE(cluster["plugins"].contains("gpu_sleep"));

  // /metrics carries the streams' backlog (for KEDA and alerts): read at the
  // turn after the host first read the stream, so before any result.
  httplib::Client http(cpu_host.endpoint("http"));
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("umi_stream_backlog{plugin=\"sleep\",state=\"waiting\"} "), std::string::npos)
      << metrics->body;
}

TEST(Farm, ThePythonProducerRunsAgainstTheFarm) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "py-host"));
  const CommandOutput run = RunCommand({"/usr/bin/python3", UMI_SOURCE_DIR "/examples/python/redis_producer.py",
                                        "--redis", redis.url(), "--count", "5", "--ms", "10"});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  std::set<std::string> seen;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_NE(line.find(" sleep ok host=py-host"), std::string::npos) << line;
    seen.insert(line.substr(0, line.find(' ')));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"0", "1", "2", "3", "4"}));
}

// Redis restarts (with AOF) while tasks run: the host keeps them, holds
// their results, reconnects and sends them; nothing is lost or run twice.
TEST(Farm, ARedisRestartMidRunLosesNothing) {
  RedisServer redis(/*append_only=*/true);
  HostProcess host(FarmHost(redis, "steady"));
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  {
    RedisClient producer(redis.url());
    for (int i = 0; i < 3; ++i) {
      producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 400}}}));
    }
  }
  AwaitStarted(events, 3);
  redis.Restart();
  RedisClient producer(redis.url());
  producer.Submit("sleep", PackTask({.id = "after", .plugin = "sleep", .input = {{"ms", 1}}}));
  std::set<std::string> ids;
  for (const Result& r : producer.Results(4)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    EXPECT_TRUE(ids.insert(r.id.value_or("")).second) << "one result per id";
  }
  EXPECT_EQ(ids, (std::set<std::string>{"t0", "t1", "t2", "after"}));
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
}

// The SDK's producer (umi/redis_client.hpp): a producer that exits right
// after submitting loses nothing; a later one with the same reply_to
// collects every result once, and what it read is trimmed from the stream.
TEST(Farm, TheSdkRedisClientCollectsWhatAnExitedProducerSubmitted) {
  RedisServer redis;
  HostProcess big(FarmHost(redis, "big"));
  HostProcess small(FarmHost(redis, "small", CpuOnlyYaml()));
  const std::string reply_to = "umi:results:batch-7";
  std::set<std::string> ids;
  {
    umi::RedisClient producer({.url = redis.url(), .reply_to = reply_to});
    for (int i = 0; i < 20; ++i) {
      const std::string id = "batch-" + std::to_string(i);
      producer.Submit({.id = id, .plugin = "sleep", .input = umi::PackMap({{"ms", 10}})});
      ids.insert(id);
    }
  }
  umi::RedisClient collector({.url = redis.url(), .reply_to = reply_to});
  for (const std::string& id : ids) collector.Expect(id);
  std::set<std::string> seen;
  while (collector.pending() > 0) {
    const std::optional<umi::TaskOutcome> outcome = collector.Next(std::chrono::seconds(60));
    ASSERT_TRUE(outcome.has_value()) << collector.pending() << " result(s) never came";
    EXPECT_EQ(outcome->status, "ok") << outcome->id << ": " << outcome->error_message;
    EXPECT_TRUE(seen.insert(outcome->id).second) << "two outcomes for " << outcome->id;
  }
  EXPECT_EQ(seen, ids);
  EXPECT_FALSE(collector.Next(std::chrono::milliseconds(1)).has_value()) << "nothing more to hand out";
  RedisClient inspect(redis.url());
  EXPECT_LE(inspect.Command({"XLEN", reply_to})->integer, 1) << "read results are trimmed";
  EXPECT_EQ(inspect.Pending("umi:tasks:sleep"), 0);
}

// A client's own reply stream (no reply_to given) is gone with the client;
// Await picks one id out of several.
TEST(Farm, TheSdkRedisClientAwaitsOneIdAndRemovesItsOwnStream) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "solo"));
  std::string stream;
  {
    umi::RedisClient client({.url = redis.url()});
    stream = client.reply_to();
    EXPECT_EQ(stream.rfind("umi:results:", 0), 0u) << stream;
    client.Submit({.id = "slow", .plugin = "sleep", .input = umi::PackMap({{"ms", 200}})});
    client.Submit({.id = "quick", .plugin = "noop"});
    client.Submit({.id = "fails", .plugin = "sleep", .input = umi::PackMap({{"ms", -1}})});
    const std::optional<umi::TaskOutcome> slow = client.Await("slow", std::chrono::seconds(60));
    ASSERT_TRUE(slow.has_value());
    EXPECT_EQ(slow->status, "ok");
    EXPECT_EQ(slow->host, "solo");
    const std::optional<umi::TaskOutcome> fails = client.Await("fails", std::chrono::seconds(60));
    ASSERT_TRUE(fails.has_value());
    EXPECT_EQ(fails->status, "error");
    EXPECT_EQ(fails->error_code, "bad_input");
    const std::optional<umi::TaskOutcome> quick = client.Next(std::chrono::seconds(60));
    ASSERT_TRUE(quick.has_value());
    EXPECT_EQ(quick->id, "quick");
    EXPECT_EQ(client.pending(), 0u);
  }
  RedisClient inspect(redis.url());
  EXPECT_EQ(inspect.Command({"EXISTS", stream})->integer, 0) << "the client deleted its own stream";
}

// A server that requires a password: the host and the SDK client read it
// from a file (a mounted secret); a wrong one stops the host at start with
// an error that names the cause and never the password.
TEST(Farm, APasswordFileReachesAServerThatRequiresOne) {
  RedisServer redis(/*append_only=*/false, "s3cret-pass");
  TempDir secrets;
  const std::string good = secrets.Write("redis.pass", "s3cret-pass\n").string();
  const std::string bad = secrets.Write("wrong.pass", "guess-what\n").string();
  HostProcess host(FarmHost(redis, "locked", TestConfigYaml() + "transport: {redis_password_file: " + good + "}\n"));
  umi::RedisClient client({.url = redis.url(), .password_file = good});
  client.Submit({.id = "behind-auth", .plugin = "noop"});
  const std::optional<umi::TaskOutcome> outcome = client.Await("behind-auth", std::chrono::seconds(60));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->status, "ok");

  auto start_with = [&](const std::string& password_file) {
    const std::filesystem::path config =
        secrets.Write("bad.yaml", TestConfigYaml() + "transport: {redis_password_file: " + password_file + "}\n");
    return RunCommand({UMI_HOST_BINARY, "--config", config.string(), "--plugins", UMI_TEST_PLUGIN_DIR, "--redis",
                       redis.url(), "--http", "off", "--tasks", "tcp://127.0.0.1:*", "--results", "tcp://127.0.0.1:*",
                       "--rpc", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*"},
                      true);
  };
  const CommandOutput refused = start_with(bad);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.out.find("AUTH failed"), std::string::npos) << refused.out;
  EXPECT_EQ(refused.out.find("guess-what"), std::string::npos) << "the password is never printed";
  const std::string missing = (secrets.path() / "absent.pass").string();
  const CommandOutput unreadable = start_with(missing);
  EXPECT_NE(unreadable.exit_code, 0);
  EXPECT_NE(unreadable.out.find("transport.redis_password_file: cannot read a password from " + missing),
            std::string::npos)
      << unreadable.out;
  EXPECT_THROW(umi::RedisClient({.url = redis.url(), .password_file = bad}), umi::RedisError);
  EXPECT_THROW(umi::RedisClient({.url = redis.url(), .password_file = secrets.path() / "missing"}), umi::RedisError);
}

// The dashboard of a host on Redis shows the whole farm: /api/cluster, and
// the page's farm tables in a real browser. A host without Redis says 404.
TEST(Farm, TheDashboardShowsEveryHostAndTheBacklog) {
  RedisServer redis;
  HostProcess left(FarmHost(redis, "left"));
  HostProcess right(FarmHost(redis, "right", CpuOnlyYaml()));
  RedisClient producer(redis.url());
  producer.Submit("sleep", PackTask({.id = "seen", .plugin = "sleep", .input = {{"ms", 1}}}));
  producer.Results(1);

  httplib::Client http(left.endpoint("http"));
  const auto reply = http.Get("/api/cluster");
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 200) << reply->body;
  const auto cluster = nlohmann::json::parse(reply->body);
  ASSERT_EQ(cluster["hosts"].size(), 2u) << reply->body;
  EXPECT_EQ(cluster["hosts"][0]["name"], "left");
  EXPECT_EQ(cluster["hosts"][1]["name"], "right");
  EXPECT_TRUE(cluster["plugins"].contains("sleep")) << reply->body;

  HostProcess alone;
  httplib::Client plain(alone.endpoint("http"));
  const auto none = plain.Get("/api/cluster");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404);

  if (!std::filesystem::exists("/usr/bin/chromium")) GTEST_SKIP() << "chromium is not installed (scripts/bootstrap installs it)";
  TempDir profile;
  const CommandOutput dom = RunCommand({"/usr/bin/timeout", "120", "/usr/bin/chromium", "--headless", "--no-sandbox",
                                        "--disable-gpu", "--disable-dev-shm-usage",
                                        "--user-data-dir=" + profile.path().string(), "--virtual-time-budget=5000",
                                        "--dump-dom", left.endpoint("http") + "/"});
  ASSERT_EQ(dom.exit_code, 0) << dom.out;
  EXPECT_NE(dom.out.find(R"(<tr data-host="left">)"), std::string::npos) << dom.out;
  EXPECT_NE(dom.out.find(R"(<tr data-host="right">)"), std::string::npos);
  EXPECT_NE(dom.out.find(R"(<tr data-plugin="sleep">)"), std::string::npos);
  EXPECT_EQ(dom.out.find(R"(<div id="farm" hidden)"), std::string::npos) << "the farm panel is shown";
}

}  // namespace
}  // namespace umi::testing
