// The farm under the faults every Redis deployment sees, with real
// umi-host processes on a real redis-server: refusals (ACL, a key of
// another type, full memory), a host frozen past its lease, two processes
// under one name, and where tasks go (a stream gives a host no more than its
// plugin can start; one plugin's queue does not hold another's room).
// The promise checked: exactly one result per id, nothing left pending.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include <umi/redis_streams.hpp>

#include "support/host_process.h"
#include "support/redis_server.h"

namespace umi::testing {
namespace {

// The test pool with `sleep` capped at one task at a time.
std::string OneSleepAtATimeYaml() {
  std::string yaml = TestConfigYaml();
  const std::string plain = "sleep: {task_group: cpu_task}";
  return yaml.replace(yaml.find(plain), plain.size(), "sleep: {task_group: cpu_task, max_instances: 1}");
}

int ReadyStatus(const HostProcess& host) {
  httplib::Client http(host.endpoint("http"));
  const auto ready = http.Get("/readyz");
  return ready ? ready->status : -1;
}

// An ACL user limited to umi:* (as an operator grants a farm), one task
// whose reply_to lies outside it and one whose reply_to is a string: before,
// the turn's one transaction was refused whole and every result of the
// batch was lost (4 of 10 arrived); now each result's fate is its own, and
// the two that cannot go where they asked go to umi:results with the reason.
TEST(FarmFaults, AResultRedisRefusesNeverTakesTheOthersOfItsBatchDown) {
  RedisServer redis(/*append_only=*/false, /*password=*/"", /*tcp=*/true);
  RedisClient admin(redis.url());
  admin.Command({"ACL", "SETUSER", "farm", "on", ">farm-pw", "~umi:*", "+@all"});
  admin.Command({"SET", "umi:a-string", "not a stream"});
  HostProcess::Options options = FarmHost(redis, "acl-host");
  options.extra_args = {"--redis", "redis://farm:farm-pw@127.0.0.1:" + std::to_string(redis.port())};
  HostProcess host(options);  // logs in as the ACL user: AUTH farm farm-pw
  std::set<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    TaskSpec task{.id = "r" + std::to_string(i), .plugin = "noop"};
    if (i == 3) task.reply_to = "outside:results";
    if (i == 6) task.reply_to = "umi:a-string";
    admin.Submit("noop", PackTask(task));
    ids.insert(task.id);
  }
  std::set<std::string> seen;
  for (const Result& r : admin.Results(10)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    EXPECT_TRUE(seen.insert(r.id.value_or("")).second) << "one result per id";
  }
  EXPECT_EQ(seen, ids);
  const RedisReply entries = admin.Command({"XRANGE", "umi:results", "-", "+"});
  std::map<std::string, std::string> reasons;  // reply_to -> reason
  for (size_t e = 0; e < entries->elements; ++e) {
    const redisReply* fields = entries->element[e]->element[1];
    std::map<std::string, std::string> by_name;
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
      by_name[ReplyText(fields->element[f])] = ReplyText(fields->element[f + 1]);
    }
    if (by_name.count("reply_to")) reasons[by_name["reply_to"]] = by_name["reason"];
  }
  EXPECT_NE(reasons["outside:results"].find("can't access"), std::string::npos) << reasons["outside:results"];
  EXPECT_NE(reasons["umi:a-string"].find("WRONGTYPE"), std::string::npos) << reasons["umi:a-string"];
  EXPECT_EQ(admin.Pending("umi:tasks:noop"), 0) << "never an XACK without its result";
  EXPECT_TRUE(Eventually([&] { return MetricValue(host, "umi_redis_redirected_results_total") == 2; }));
}

// Results to a reply_to that took results before go in a watched
// transaction, where a failed XADD does not stop its XACK: a reply_to
// replaced by a string between two tasks still loses no result (it goes to
// umi:results with the reason) and leaves nothing pending.
TEST(FarmFaults, AReplyStreamTurnedIntoAnotherTypeStillLosesNoResult) {
  RedisServer redis;
  RedisClient producer(redis.url());
  HostProcess host(FarmHost(redis, "type-host"));
  for (int i = 0; i < 3; ++i) {
    producer.Submit("noop", PackTask({.id = "before-" + std::to_string(i), .plugin = "noop", .reply_to = "umi:mine"}));
  }
  for (const Result& r : producer.Results(3, "umi:mine")) EXPECT_EQ(r.status, "ok") << r.error_message;
  producer.Command({"DEL", "umi:mine"});
  producer.Command({"SET", "umi:mine", "not a stream any more"});
  producer.Submit("noop", PackTask({.id = "after", .plugin = "noop", .reply_to = "umi:mine"}));
  RedisClient fallback_reader(redis.url());  // a client's reads go on from its last entry: one per stream
  const std::vector<Result> redirected = fallback_reader.Results(1);
  ASSERT_EQ(redirected.size(), 1u);
  EXPECT_EQ(redirected[0].id, "after");
  EXPECT_EQ(redirected[0].status, "ok");
  const RedisReply entries = producer.Command({"XRANGE", "umi:results", "-", "+"});
  ASSERT_EQ(entries->elements, 1u);
  const redisReply* fields = entries->element[0]->element[1];
  std::map<std::string, std::string> by_name;
  for (size_t f = 0; f + 1 < fields->elements; f += 2) {
    by_name[ReplyText(fields->element[f])] = ReplyText(fields->element[f + 1]);
  }
  EXPECT_EQ(by_name["reply_to"], "umi:mine");
  EXPECT_NE(by_name["reason"].find("WRONGTYPE"), std::string::npos) << by_name["reason"];
  EXPECT_EQ(producer.Pending("umi:tasks:noop"), 0);
  EXPECT_TRUE(Eventually([&] { return MetricValue(host, "umi_redis_redirected_results_total") == 1; }));
}

// Redis at maxmemory with noeviction refuses every write of a result: the
// host holds them (not ready, held results on /metrics) and sends them once
// Redis takes writes again. Before, the refused batch was dropped and its
// entries stayed pending under the live host for ever.
TEST(FarmFaults, AFullRedisHoldsResultsUntilItTakesWritesAgain) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "full"));
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  RedisClient producer(redis.url());
  for (int i = 0; i < 3; ++i) {
    producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  AwaitStarted(events, 3);
  producer.Command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
  producer.Command({"CONFIG", "SET", "maxmemory", "1"});
  ASSERT_TRUE(Eventually([&] { return MetricValue(host, "umi_redis_held_results") == 3; }));
  EXPECT_EQ(ReadyStatus(host), 503) << "not ready while Redis refuses its results";
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 3);
  producer.Command({"CONFIG", "SET", "maxmemory", "0"});
  std::set<std::string> seen;
  for (const Result& r : producer.Results(3)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    EXPECT_TRUE(seen.insert(r.id.value_or("")).second) << "one result per id";
  }
  EXPECT_EQ(seen, (std::set<std::string>{"t0", "t1", "t2"}));
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
  EXPECT_TRUE(Eventually([&] { return ReadyStatus(host) == 200; }));
}

// A host frozen past its lease (SIGSTOP: a VM pause, a debugger) while it
// runs tasks: a live host takes them from the lapsed leases and runs them;
// the frozen one, resumed, finishes its copies and their results are
// fenced (dropped, counted). Before, both published: two results per id.
TEST(FarmFaults, AFrozenHostsTasksEndOnceAndItsLateResultsAreDropped) {
  RedisServer redis;
  HostProcess frozen(FarmHost(redis, "frozen"));
  EventsClient frozen_events(frozen.context(), frozen.endpoint("events"));
  AwaitSubscription(frozen, frozen_events);
  RedisClient producer(redis.url());
  for (int i = 0; i < 3; ++i) {
    producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 1500}}}));
  }
  AwaitStarted(frozen_events, 3);
  kill(frozen.pid(), SIGSTOP);
  HostProcess live(FarmHost(redis, "live"));
  EventsClient live_events(live.context(), live.endpoint("events"));
  AwaitSubscription(live, live_events);
  AwaitStarted(live_events, 3);  // taken from the lapsed leases
  kill(frozen.pid(), SIGCONT);
  std::set<std::string> seen;
  for (const Result& r : producer.Results(3)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    EXPECT_EQ(r.host, "live");
    EXPECT_TRUE(seen.insert(r.id.value_or("")).second) << "one result per id";
  }
  // The frozen host's three copies end too; each is fenced, not published.
  EXPECT_TRUE(Eventually([&] { return MetricValue(frozen, "umi_redis_stale_results_total") == 3; }));
  EXPECT_EQ(producer.Command({"XLEN", "umi:results"})->integer, 3) << "exactly one result per id on the stream";
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
  EXPECT_EQ(MetricValue(live, "umi_redeliveries_total"), 3);
}

// Two processes under one --name: the second refuses to start, naming the
// cause. Before, it "took back" the live host's running tasks and ran them
// again (two results per task).
TEST(FarmFaults, ASecondHostWithALiveNameRefusesToStart) {
  RedisServer redis;
  HostProcess first(FarmHost(redis, "twin"));
  TempDir dir;
  const auto config = dir.Write("config.yaml", TestConfigYaml());
  const CommandOutput second = RunCommand(
      {"/usr/bin/timeout", "30", UMI_HOST_BINARY, "--config", config.string(), "--plugins", UMI_TEST_PLUGIN_DIR,
       "--redis", redis.url(), "--name", "twin", "--http", "off", "--tasks", "tcp://127.0.0.1:*", "--results",
       "tcp://127.0.0.1:*", "--rpc", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*"},
      true);
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.exit_code, 124) << "it must refuse, not serve";
  EXPECT_NE(second.out.find("another host named 'twin' is alive"), std::string::npos) << second.out;
  RedisClient producer(redis.url());
  producer.Submit("noop", PackTask({.id = "still-served", .plugin = "noop"}));
  const Result r = producer.Results(1).front();
  EXPECT_EQ(r.status, "ok");
  EXPECT_EQ(r.host, "twin");
}

// One read takes from each stream no more than its plugin can start (plus
// read-ahead): a host with room for one `sleep` takes one, and a second
// host gets most of the rest. Before, COUNT was the largest room of any plugin
// (noop's 8), so the first host took all six and ran them one by one.
TEST(FarmFaults, AHostTakesNoMoreOfAStreamThanItsPluginCanStart) {
  RedisServer redis;
  RedisClient producer(redis.url());
  for (int i = 0; i < 6; ++i) {
    producer.Submit("sleep", PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 2000}}}));
  }
  HostProcess narrow(FarmHost(redis, "narrow", OneSleepAtATimeYaml()));
  EventsClient events(narrow.context(), narrow.endpoint("events"));
  AwaitSubscription(narrow, events);
  AwaitStarted(events, 1);
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 1) << "it took only what it can start";
  HostProcess wide(FarmHost(redis, "wide"));
  std::map<std::string, int> ran_on;
  for (const Result& r : producer.Results(6)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    ++ran_on[r.host];
  }
  EXPECT_GE(ran_on["wide"], 3);
}

// Tasks of one plugin queued behind its own cap take no room from another
// plugin: noop tasks from Redis run at once beside ten queued `sleep`
// tasks. Before, room was counted minus every queued task of every plugin,
// so the noop tasks waited until the sleep queue had shrunk.
TEST(FarmFaults, AQueueOfOnePluginDoesNotHoldAnotherPluginsRoom) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "busy", OneSleepAtATimeYaml()));
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  for (int i = 0; i < 10; ++i) {
    host.Send(PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  AwaitStarted(events, 1);
  RedisClient producer(redis.url());
  for (int i = 0; i < 3; ++i) producer.Submit("noop", PackTask({.id = "n" + std::to_string(i), .plugin = "noop"}));
  double last_noop_end = 0;
  for (const Result& r : producer.Results(3)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    last_noop_end = std::max(last_noop_end, r.finished_at.value_or(1e300));
  }
  std::vector<double> sleep_starts;
  for (const Result& r : host.Results(10)) sleep_starts.push_back(r.started_at.value_or(0));
  std::sort(sleep_starts.begin(), sleep_starts.end());
  EXPECT_LT(last_noop_end, sleep_starts[2]) << "the noop tasks waited for the sleep queue to shrink";
}

// A poison task read together with five ordinary ones (read-ahead: its
// plugin runs two at a time, one slot held by a task that waits): it takes
// its host down; the next host counts a delivery only for the two tasks
// that were running, so they end crashed/max_deliveries and the five read
// ahead beside them run ok. Before, all seven were charged and travelled
// to umi:dead:faulty together.
TEST(FarmFaults, TasksReadAheadBesideAPoisonTaskAreNotChargedForItsCrash) {
  RedisServer redis;
  RedisClient producer(redis.url());
  producer.Submit("faulty", PackTask({.id = "busy", .plugin = "faulty", .string_input = {{"mode", "wait"}}}));
  producer.Submit("faulty", PackTask({.id = "poison", .plugin = "faulty", .string_input = {{"mode", "exit"}}}));
  for (int i = 0; i < 5; ++i) producer.Submit("faulty", PackTask({.id = "t" + std::to_string(i), .plugin = "faulty"}));
  const std::string yaml =
      TestConfigYaml("  faulty: {max_instances: 2}\n") + "transport: {max_deliveries: 1, prefetch: 5}\n";
  auto options = FarmHost(redis, "first", yaml);
  options.plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR};
  auto first = std::make_unique<HostProcess>(options);
  int status = 0;
  waitpid(first->pid(), &status, 0);  // the poison task takes its host down
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3);
  EXPECT_EQ(producer.Pending("umi:tasks:faulty"), 7) << "it read all seven: two to run, five ahead";

  options.name = "second";
  HostProcess second(options);
  std::map<std::string, Result> by_id;
  for (const Result& r : producer.Results(7)) by_id[r.id.value_or("")] = r;
  ASSERT_EQ(by_id.size(), 7u);
  for (const char* running : {"busy", "poison"}) {
    EXPECT_EQ(by_id[running].status, "crashed") << running;
    EXPECT_EQ(by_id[running].error_code, "max_deliveries") << running;
  }
  for (int i = 0; i < 5; ++i) {
    const Result& r = by_id["t" + std::to_string(i)];
    EXPECT_EQ(r.status, "ok") << r.id.value_or("") << ": " << r.error_code << " " << r.error_message;
  }
  EXPECT_EQ(producer.Command({"XLEN", "umi:dead:faulty"})->integer, 2);
  EXPECT_EQ(producer.Pending("umi:tasks:faulty"), 0);
  EXPECT_EQ(producer.Command({"HLEN", "umi:started:faulty"})->integer, 0) << "no start mark outlives its entry";
}

// Priority across the farm: two hosts with one `sleep` slot each, ten
// ordinary tasks waiting in Redis, then two urgent ones (priority 9): the
// urgent tasks start in the next round of free slots. Before, a host read
// its stream in order and they started last (positions 11 and 12 of 12).
TEST(FarmFaults, AnUrgentTaskStartsInTheNextRoundOfFreeSlotsAcrossTheFarm) {
  RedisServer redis;
  HostProcess left(FarmHost(redis, "left", OneSleepAtATimeYaml()));
  HostProcess right(FarmHost(redis, "right", OneSleepAtATimeYaml()));
  RedisClient producer(redis.url());
  for (int i = 0; i < 10; ++i) {
    producer.Submit("sleep", PackTask({.id = "ordinary-" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  ASSERT_TRUE(Eventually([&] { return producer.Pending("umi:tasks:sleep") == 2; })) << "both slots busy";
  for (int i = 0; i < 2; ++i) {
    const std::string urgent =
        PackTask({.id = "urgent-" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}, .priority = 9});
    producer.Command({"XADD", umi::RedisTaskStream("sleep", 9), "*", "m", urgent});  // as every umi client does
  }
  std::vector<std::pair<double, std::string>> starts;
  for (const Result& r : producer.Results(12)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    starts.emplace_back(r.started_at.value_or(0), r.id.value_or(""));
  }
  std::sort(starts.begin(), starts.end());
  for (size_t position = 0; position < starts.size(); ++position) {
    if (starts[position].second.rfind("urgent-", 0) == 0) {
      EXPECT_LT(position, 4u) << starts[position].second << " started behind ordinary tasks that waited less";
    }
  }
  EXPECT_EQ(umi::RedisTaskStream("sleep", 9), "umi:tasks:sleep:p9");
  EXPECT_EQ(umi::RedisTaskStream("sleep", 0), "umi:tasks:sleep");
  EXPECT_EQ(umi::RedisTaskStream("sleep", -5), "umi:tasks:sleep");
  EXPECT_EQ(umi::RedisStreamPlugin("umi:tasks:sleep:p3"), "sleep");
}

// What an operator sees of the farm: a task for a plugin no live host
// serves is named (cluster view, umi-submit's warning) instead of waiting
// invisibly; a dead host stays in view with its last heartbeat; heartbeat
// numbers are numbers. Before: "waiting 0, length 1", nothing said, a dead
// host simply vanished, and every field was a string.
TEST(FarmFaults, TheClusterViewNamesUnservedPluginsAndDeadHosts) {
  RedisServer redis;
  auto doomed = std::make_unique<HostProcess>(FarmHost(redis, "doomed"));
  HostProcess live(FarmHost(redis, "live"));
  kill(doomed->pid(), SIGKILL);
  waitpid(doomed->pid(), nullptr, 0);
  TempDir dir;
  const auto file = dir.Write("tasks.jsonl", R"({"id":"lost","plugin":"nobody_runs_this","input":{}})" "\n");
  const CommandOutput submit =
      RunCommand({UMI_SUBMIT_BINARY, "--redis", redis.url(), "--quiet", "--wait-s", "1", file.string()}, true);
  EXPECT_NE(submit.out.find("warning: no live host serves plugin 'nobody_runs_this'"), std::string::npos)
      << submit.out;
  RedisClient inspect(redis.url());
  ASSERT_TRUE(Eventually([&] { return inspect.Command({"EXISTS", "umi:hosts:doomed"})->integer == 0; }));
  const CommandOutput view = RunCommand({UMI_SUBMIT_BINARY, "--redis", redis.url(), "--op", "cluster"});
  ASSERT_EQ(view.exit_code, 0) << view.out;
  const auto cluster = nlohmann::json::parse(view.out);
  EXPECT_EQ(cluster["unserved_plugins"], nlohmann::json::array({"nobody_runs_this"})) << view.out;
  EXPECT_EQ(cluster["plugins"]["nobody_runs_this"]["served"], false);
  EXPECT_EQ(cluster["plugins"]["nobody_runs_this"]["waiting"], 1);
  EXPECT_EQ(cluster["plugins"]["sleep"]["served"], true);
  std::map<std::string, nlohmann::json> hosts;
  for (const auto& host : cluster["hosts"]) hosts[host["name"]] = host;
  ASSERT_EQ(hosts.size(), 2u) << view.out;
  EXPECT_EQ(hosts["live"]["alive"], true);
  EXPECT_TRUE(hosts["live"]["running"].is_number()) << view.out;
  EXPECT_EQ(hosts["doomed"]["alive"], false);
  EXPECT_GE(hosts["doomed"]["last_seen_s"].get<double>(), 0.0);
  EXPECT_TRUE(Eventually([&] {
    httplib::Client http(live.endpoint("http"));
    const auto metrics = http.Get("/metrics");
    return metrics && metrics->body.find("umi_stream_unserved_tasks{plugin=\"nobody_runs_this\"} 1\n") != std::string::npos;
  })) << "every host says so on /metrics";
}

// No starvation across hosts: a steady stream of half-core tasks of
// staggered length (four at a time on two cores) never leaves both cores
// free, and a two-core task waits in Redis. Once it waited
// reserve_after_ms, the host takes it although it has no room and its queue
// reserves for it, so it starts while most of the stream still waits.
// Before, it started only when the stream ran dry (last of 81).
TEST(FarmFaults, ALargeTaskThatNoHostHasRoomForIsTakenAndReservedFor) {
  RedisServer redis;
  HostProcess host(FarmHost(redis, "small-host", R"(hardware:
  cpu: {cores: 2, threads: 8, max_concurrent_tasks: 8}
  memory: {total_gb: 8}
scheduler: {reserve_after_ms: 300}
plugins:
  sleep: {cpu_cores: 0.5, threads: 1}
  spin: {cpu_cores: 2, threads: 2}
)"));
  RedisClient producer(redis.url());
  for (int i = 0; i < 80; ++i) {
    producer.Submit("sleep", PackTask({.id = "small-" + std::to_string(i), .plugin = "sleep",
                                       .input = {{"ms", 150 + 40 * (i % 5)}}}));
  }
  ASSERT_TRUE(Eventually([&] { return producer.Pending("umi:tasks:sleep") == 4; })) << "the pool is full";
  producer.Submit("spin", PackTask({.id = "large", .plugin = "spin", .input = {{"ms", 20}}}));
  std::vector<std::pair<double, std::string>> starts;
  for (const Result& r : producer.Results(81)) {
    EXPECT_EQ(r.status, "ok") << r.id.value_or("") << ": " << r.error_message;
    starts.emplace_back(r.started_at.value_or(0), r.id.value_or(""));
  }
  std::sort(starts.begin(), starts.end());
  const auto large = std::find_if(starts.begin(), starts.end(), [](const auto& s) { return s.second == "large"; });
  ASSERT_NE(large, starts.end());
  EXPECT_LT(large - starts.begin(), 50) << "the two-core task waited for the half-core stream to run dry";
}

// A host that drains leaves the farm's tasks to the other hosts: tasks
// added while it finishes its running one wait for the next host. Before,
// the read under way when the drain began took them, and the host answered
// them rejected/shutting_down.
TEST(FarmFaults, ADrainingHostLeavesNewTasksToOtherHosts) {
  RedisServer redis;
  RedisClient producer(redis.url());
  auto draining = std::make_unique<HostProcess>(FarmHost(redis, "draining"));
  EventsClient events(draining->context(), draining->endpoint("events"));
  AwaitSubscription(*draining, events);
  // Long enough that the drain is still under way when it is looked for, on a loaded machine too
  // (with 1.5 s a busy CI box saw the host finish and exit first).
  producer.Submit("sleep", PackTask({.id = "running", .plugin = "sleep", .input = {{"ms", 4000}}}));
  // Started, not only read: a task read but not started is given back at
  // once, and the host exits before its drain can be seen (TSan saw it).
  AwaitStarted(events, 1, "running");
  kill(draining->pid(), SIGTERM);
  ASSERT_TRUE(Eventually([&] { return ReadyStatus(*draining) == 503; })) << "the drain began";
  for (int i = 0; i < 5; ++i) producer.Submit("noop", PackTask({.id = "t" + std::to_string(i), .plugin = "noop"}));
  const Result finished = producer.Results(1).front();
  EXPECT_EQ(finished.id, "running");
  EXPECT_EQ(finished.status, "ok");
  EXPECT_EQ(draining->Stop(), 0);

  HostProcess next(FarmHost(redis, "next"));
  for (const Result& r : producer.Results(5)) {
    EXPECT_EQ(r.status, "ok") << r.id.value_or("") << ": " << r.error_code << " " << r.error_message;
    EXPECT_EQ(r.host, "next");
  }
  EXPECT_EQ(producer.Pending("umi:tasks:noop"), 0);
}

// A drain gives back the tasks it queued (they had not started); a task
// that had cost hosts their lives keeps that charge through the give-back.
// Here "big" was started by a host that died ("ghost@1": read, marked
// started, never answered); the first host claims it (delivery 2 of
// max_deliveries 2) but queues it behind a running task, and drains; a
// second ghost dies running the copy. The next host must count three
// deliveries and end it crashed/max_deliveries. Before, the copy started
// with a fresh count, so a poison task drained often never reached
// max_deliveries (here the last host ran it: ok).
TEST(FarmFaults, ATaskADrainGivesBackKeepsTheDeliveriesChargedToIt) {
  RedisServer redis;
  RedisClient producer(redis.url());
  const std::string stream = "umi:tasks:sleep";
  producer.Command({"XGROUP", "CREATE", stream, "umi", "0", "MKSTREAM"});
  // A host that dies running the task: it read it and marked it started.
  auto die_running_next = [&](const std::string& consumer) {
    RedisReply read = producer.Command({"XREADGROUP", "GROUP", "umi", consumer, "COUNT", "1", "STREAMS", stream, ">"});
    if (read->type != REDIS_REPLY_ARRAY) throw std::runtime_error("no task waits in " + stream);
    const std::string entry = ReplyText(read->element[0]->element[1]->element[0]->element[0]);
    producer.Command({"HSET", "umi:started:sleep", entry, consumer});
    return entry;
  };
  producer.Submit("sleep", PackTask({.id = "big", .plugin = "sleep", .input = {{"ms", 10}},
                                     .resources = {{"cpu_cores", 24}}}));
  const std::string first_copy = die_running_next("ghost@1");
  producer.Submit("sleep", PackTask({.id = "blocker", .plugin = "sleep", .input = {{"ms", 3000}}}));
  const std::string yaml = TestConfigYaml() + "allow_task_overrides: true\ntransport: {max_deliveries: 2}\n";

  auto draining = std::make_unique<HostProcess>(FarmHost(redis, "draining", yaml));
  ASSERT_TRUE(Eventually([&] {
    RedisReply owner = producer.Command({"XPENDING", stream, "umi", first_copy, first_copy, "1"});
    return owner->elements == 1 && ReplyText(owner->element[0]->element[1]).rfind("draining@", 0) == 0;
  })) << "the host claims the dead host's task (it queues: the blocker holds two of its 24 cores)";
  EXPECT_EQ(draining->Stop(), 0);  // gives "big" back, waits for the blocker
  die_running_next("ghost@2");      // the copy costs another host its life

  HostProcess last(FarmHost(redis, "last", yaml));
  std::map<std::string, Result> by_id;
  for (const Result& r : producer.Results(2)) by_id[r.id.value_or("")] = r;
  EXPECT_EQ(by_id["blocker"].status, "ok");
  EXPECT_EQ(by_id["big"].status, "crashed") << "two hosts died running it: " << by_id["big"].error_message;
  EXPECT_EQ(by_id["big"].error_code, "max_deliveries");
  EXPECT_EQ(producer.Pending(stream), 0);
}

}  // namespace
}  // namespace umi::testing
