// Flows against the same work orchestrated by a client (issue 30, item 7),
// through the real umi-host with no-op steps, so what is measured is the
// host's and the wire's cost per step:
//   - a diamond (a; b and c after a; d after both) as one flow, against a
//     client that sends a, waits, sends b and c, waits, sends d, waits
//     (three round trips), one diamond at a time, over rpc and over Redis;
//   - flows of 1,000 steps: a chain (each after the one before) and a fan
//     (999 independent steps, then one after all of them), over rpc and
//     over a Redis farm of one host and of three.
// Prints one table; ratios are within this run.
//
//   umi_flow_bench [--diamonds 300]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <string>
#include <vector>

#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

using namespace umi::testing;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kConfig = R"(hardware:
  cpu: {cores: 8, threads: 8, max_concurrent_tasks: 8}
  memory: {total_gb: 16}
scheduler: {max_queued: 200000}
)";

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::vector<FlowStepSpec> Diamond() {
  return {{"a", {}, {}, "noop"}, {"b", {}, {"a"}, "noop"}, {"c", {}, {"a"}, "noop"}, {"d", {}, {"b", "c"}, "noop"}};
}

HostProcess::Options Options(const std::string& name = "bench") {
  return {.config_yaml = kConfig, .plugin_dirs = {UMI_TEST_PLUGIN_DIR}, .log_level = "error", .name = name};
}

// The three round trips of a client that orchestrates a diamond itself.
template <typename Send, typename Receive>
void ClientDiamond(const std::string& prefix, Send send, Receive receive) {
  send(PackTask({.id = prefix + "a", .plugin = "noop"}));
  receive(1);
  send(PackTask({.id = prefix + "b", .plugin = "noop"}));
  send(PackTask({.id = prefix + "c", .plugin = "noop"}));
  receive(2);
  send(PackTask({.id = prefix + "d", .plugin = "noop"}));
  receive(1);
}

struct Pair {
  double flow_us, client_us;
};

Pair DiamondsOverRpc(int diamonds) {
  HostProcess host(Options());
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  std::vector<double> flow, client;
  for (int i = 0; i < diamonds; ++i) {
    const auto start = Clock::now();
    rpc.Send(PackFlow("flow-" + std::to_string(i), Diamond()));
    rpc.Receive();
    const auto middle = Clock::now();
    ClientDiamond("client-" + std::to_string(i) + "-", [&](const std::string& bytes) { rpc.Send(bytes); },
                  [&](int count) {
                    for (int n = 0; n < count; ++n) rpc.Receive();
                  });
    flow.push_back(Micros(middle - start));
    client.push_back(Micros(Clock::now() - middle));
  }
  return {Median(flow), Median(client)};
}

Pair DiamondsOverRedis(int diamonds) {
  RedisServer redis;
  RedisClient producer(redis.url());
  HostProcess::Options options = FarmHost(redis, "bench", kConfig);
  options.plugin_dirs = {UMI_TEST_PLUGIN_DIR};
  options.log_level = "error";
  HostProcess host(options);
  std::vector<double> flow, client;
  for (int i = 0; i < diamonds; ++i) {
    const auto start = Clock::now();
    producer.Submit("noop", PackFlow("flow-" + std::to_string(i), Diamond()));
    producer.Results(1);
    const auto middle = Clock::now();
    ClientDiamond("client-" + std::to_string(i) + "-",
                  [&](const std::string& bytes) { producer.Submit("noop", bytes); },
                  [&](int count) { producer.Results(static_cast<size_t>(count)); });
    flow.push_back(Micros(middle - start));
    client.push_back(Micros(Clock::now() - middle));
  }
  return {Median(flow), Median(client)};
}

// `steps` no-op steps: a chain (each after the one before) or a fan (all
// independent, then the last after every other).
std::vector<FlowStepSpec> BigFlowSteps(int steps, bool chain) {
  std::vector<FlowStepSpec> flow;
  for (int i = 0; i < steps; ++i) {
    FlowStepSpec step{.name = "s" + std::to_string(i), .plugin = "noop"};
    if (chain && i > 0) step.after = {"s" + std::to_string(i - 1)};
    flow.push_back(std::move(step));
  }
  if (!chain) {
    flow.back().after.clear();
    for (int i = 0; i + 1 < steps; ++i) flow.back().after.push_back("s" + std::to_string(i));
  }
  return flow;
}

// One flow's time per step, in microseconds; `run(id)` sends it and waits
// for its result. A first flow warms up: the host's first flow pays for its
// buffers and the plugin's first calls.
template <typename Run>
double PerStep(int steps, Run run) {
  run("warm");
  const auto start = Clock::now();
  const Result result = run("big");
  const double us = Micros(Clock::now() - start);
  if (result.status != "ok") std::fprintf(stderr, "flow of %d steps ended %s\n", steps, result.status.c_str());
  return us / steps;
}

double BigFlowOverRpc(int steps, bool chain) {
  HostProcess host(Options());
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  const std::vector<FlowStepSpec> flow = BigFlowSteps(steps, chain);
  return PerStep(steps, [&](const std::string& id) {
    rpc.Send(PackFlow(id, flow));
    return ParseResult(rpc.Receive());
  });
}

// Over a farm of `hosts` hosts: the flow's state in Redis, each step a
// stream entry and a script call.
double BigFlowOverRedis(int steps, bool chain, int hosts) {
  RedisServer redis;
  RedisClient producer(redis.url());
  std::vector<std::unique_ptr<HostProcess>> farm;
  for (int i = 0; i < hosts; ++i) {
    HostProcess::Options options = FarmHost(redis, "bench-" + std::to_string(i), kConfig);
    options.plugin_dirs = {UMI_TEST_PLUGIN_DIR};
    options.log_level = "error";
    farm.push_back(std::make_unique<HostProcess>(options));
  }
  const std::vector<FlowStepSpec> flow = BigFlowSteps(steps, chain);
  return PerStep(steps, [&](const std::string& id) {
    producer.Submit("noop", PackFlow(id, flow));
    return producer.Results(1).at(0);
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"umi flow benchmarks: a diamond as a flow against a client's round trips; flows of 1,000 steps"};
  int diamonds = 300;
  app.add_option("--diamonds", diamonds, "Diamonds timed per row (one at a time)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const Pair rpc = DiamondsOverRpc(diamonds);
  const Pair redis = DiamondsOverRedis(diamonds);
  std::printf("no-op diamond (4 steps), one at a time, median us     flow   client (3 round trips)  flow/client\n");
  std::printf("  over rpc (ZeroMQ)                              %10.0f %10.0f %20.3f\n", rpc.flow_us, rpc.client_us,
              rpc.flow_us / rpc.client_us);
  std::printf("  over Redis Streams                             %10.0f %10.0f %20.3f\n", redis.flow_us,
              redis.client_us, redis.flow_us / redis.client_us);
  std::printf("flows of 1,000 no-op steps                         us per step\n");
  std::printf("  a chain (each after the one before), rpc       %10.1f\n", BigFlowOverRpc(1000, true));
  std::printf("  a fan (999 independent, then one after all), rpc %8.1f\n", BigFlowOverRpc(1000, false));
  std::printf("  a chain, Redis, 1 host                         %10.1f\n", BigFlowOverRedis(1000, true, 1));
  std::printf("  a fan, Redis, 1 host                           %10.1f\n", BigFlowOverRedis(1000, false, 1));
  std::printf("  a fan, Redis, 3 hosts                          %10.1f\n", BigFlowOverRedis(1000, false, 3));
  return 0;
}
