// The bad-input battery, end to end against the real host: every hostile or
// broken message gets its documented answer (docs/reliability.md), the host
// keeps serving, and its memory stays bounded.
#include <gtest/gtest.h>

#include <msgpack.hpp>

#include <fstream>
#include <random>
#include <sstream>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

int64_t RssKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

std::string Packed(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& write) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  write(packer);
  return std::string(buffer.data(), buffer.size());
}

// A task map with `key` set to a value of the wrong type.
std::string TaskWith(const std::string& key, const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& value) {
  return Packed([&](auto& p) {
    const bool replaces_id = key == "id", replaces_plugin = key == "plugin";
    p.pack_map(3 - (replaces_id ? 1 : 0) - (replaces_plugin ? 1 : 0) + 1);
    if (!replaces_id) p.pack("id").pack("wrong-" + key);
    if (!replaces_plugin) p.pack("plugin").pack("noop");
    p.pack("v").pack(1);
    p.pack(key);
    value(p);
  });
}

struct Case {
  std::string name;
  std::string bytes;
  std::string code;                   // expected error.code
  std::optional<std::string> id;      // expected id, when readable
  std::string message_has;            // a part of error.message
};

std::vector<Case> Battery() {
  std::vector<Case> cases;
  const std::string valid = PackTask({.id = "t", .plugin = "noop"});
  for (size_t cut = 1; cut < valid.size(); cut += 3) {
    cases.push_back({"truncated at " + std::to_string(cut), valid.substr(0, cut), "bad_request", std::nullopt,
                     "truncated msgpack"});
  }
  cases.push_back({"deep nesting", Packed([](auto& p) {
                     p.pack_map(3);
                     p.pack("id").pack("deep");
                     p.pack("plugin").pack("noop");
                     p.pack("input").pack_map(1);
                     p.pack("x");
                     for (int i = 0; i < 200; ++i) p.pack_array(1);
                     p.pack(0);
                   }),
                   "bad_request", "deep", "depth"});  // its id came before the depth: the answer names it
  // A map header that claims 2^32-1 entries, with none behind it.
  cases.push_back({"huge map header", std::string("\xdf\xff\xff\xff\xff", 5), "bad_request", std::nullopt,
                   "over the limits"});
  cases.push_back({"huge string header", std::string("\xdb\xff\xff\xff\xff", 5), "bad_request", std::nullopt,
                   "truncated msgpack"});
  cases.push_back({"not a map", Packed([](auto& p) { p.pack(42); }), "bad_request", std::nullopt, "must be a msgpack map"});
  cases.push_back({"trailing bytes", valid + "x", "bad_request", std::nullopt, "trailing bytes"});
  cases.push_back({"empty id", Packed([](auto& p) {
                     p.pack_map(2);
                     p.pack("id").pack("");
                     p.pack("plugin").pack("noop");
                   }),
                   "bad_request", std::nullopt, "'id' must be 1..256 bytes, got 0"});
  cases.push_back({"10,000-byte id", PackTask({.id = std::string(10000, 'x'), .plugin = "noop"}), "bad_request",
                   std::nullopt, "'id' must be 1..256 bytes, got 10000"});
  cases.push_back({"unknown v", Packed([](auto& p) {
                     p.pack_map(3);
                     p.pack("v").pack(99);
                     p.pack("id").pack("future");
                     p.pack("plugin").pack("noop");
                   }),
                   "unsupported_version", "future", "protocol version 99 is not supported"});
  auto str = [](auto& p) { p.pack("text"); };
  auto num = [](auto& p) { p.pack(7); };
  auto arr = [](auto& p) { p.pack_array(0); };
  auto neg = [](auto& p) { p.pack(-5); };
  cases.push_back({"id not a string", TaskWith("id", num), "bad_request", std::nullopt, "'id' must be a string"});
  cases.push_back({"plugin not a string", TaskWith("plugin", num), "bad_request", "wrong-plugin", "'plugin'"});
  cases.push_back({"v not a number", TaskWith("v", str), "bad_request", "wrong-v", "v"});
  cases.push_back({"input not a map", TaskWith("input", arr), "bad_request", "wrong-input", "'input' must be a map"});
  cases.push_back({"priority not a number", TaskWith("priority", str), "bad_request", "wrong-priority", "priority"});
  cases.push_back({"negative timeout", TaskWith("timeout_ms", neg), "bad_request", "wrong-timeout_ms", "timeout_ms"});
  cases.push_back({"resources not a map", TaskWith("resources", num), "bad_request", "wrong-resources", "resources"});
  cases.push_back({"unknown resources key", TaskWith("resources", [](auto& p) {
                     p.pack_map(1);
                     p.pack("threads").pack(4);
                   }),
                   "bad_request", "wrong-resources", "'resources.threads' is not a requirement"});
  for (const char* field : {"cpu_cores", "cpu_threads", "gpu_count", "memory_mb", "exclusive_gpu"}) {
    cases.push_back({std::string("resources.") + field + " wrong type", TaskWith("resources", [field](auto& p) {
                       p.pack_map(1);
                       p.pack(field).pack_array(0);
                     }),
                     "bad_request", "wrong-resources", "resources"});
  }
  return cases;
}

TEST(BadInput, EveryCaseGetsItsDocumentedAnswerAndTheHostKeepsServing) {
  HostProcess host({.config_yaml = TestConfigYaml() + "allow_task_overrides: true\n"});
  // Warm-up, so the memory baseline includes what a served task allocates.
  for (int i = 0; i < 200; ++i) host.Send(PackTask({.id = "warm" + std::to_string(i), .plugin = "noop"}));
  host.Results(200);
  const int64_t rss_before = RssKiB(host.pid());

  const std::vector<Case> cases = Battery();
  for (int round = 0; round < 20; ++round) {  // repeated, to see memory not grow
    for (const Case& c : cases) host.Send(c.bytes);
    const std::vector<Result> results = host.Results(cases.size());
    if (round > 0) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const Result& r = results[i];
      EXPECT_EQ(r.status, "rejected") << c.name;
      EXPECT_EQ(r.error_code, c.code) << c.name << ": " << r.error_message;
      EXPECT_EQ(r.id, c.id) << c.name;
      EXPECT_NE(r.error_message.find(c.message_has), std::string::npos) << c.name << ": " << r.error_message;
    }
  }

  // Random bytes: each gets exactly one rejected result (or, rarely, is a
  // valid msgpack map without an id: also rejected).
  std::mt19937 random(20261126);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 300);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(static_cast<size_t>(length(random)), '\0');
    for (char& b : bytes) b = static_cast<char>(byte(random));
    host.Send(bytes);
  }
  for (const Result& r : host.Results(2000)) EXPECT_EQ(r.status, "rejected");

  host.Send(PackTask({.id = "after", .plugin = "noop"}));
  const Result after = host.NextResult();
  EXPECT_EQ(after.id, "after");
  EXPECT_EQ(after.status, "ok");
  const int64_t rss_after = RssKiB(host.pid());
  // ~20 x 40 hostile messages and 2,000 random ones later: no growth beyond
  // allocator noise (the dedup window does not keep rejections).
  if (!kSanitized) {  // ASan's quarantine holds freed memory on purpose
    EXPECT_LT(rss_after - rss_before, 16 * 1024) << rss_before << " KiB -> " << rss_after << " KiB";
  }
  EXPECT_EQ(host.Stop(), 0);
}

TEST(BadInput, AMessageAboveMaxMessageBytesDropsOnlyItsSender) {
  HostProcess host({.config_yaml = TestConfigYaml() + "transport: {max_message_bytes: 4096}\n"});
  TaskSpec big{.id = "big", .plugin = "noop", .string_input = {{"blob", std::string(8192, 'x')}}};
  host.Send(PackTask(big));
  // A second producer is untouched by the first one's oversized message.
  zmq::socket_t other(host.context(), zmq::socket_type::push);
  other.connect(host.endpoint("tasks"));
  const std::string small = PackTask({.id = "small", .plugin = "noop"});
  other.send(zmq::buffer(small));
  const Result result = host.NextResult();
  EXPECT_EQ(result.id, "small");
  EXPECT_EQ(result.status, "ok");
  // The big one never reached the host: it was neither answered nor counted.
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("stats"));
  const std::string reply = rpc.Receive();
  const msgpack::object_handle handle = msgpack::unpack(reply.data(), reply.size());
  const auto stats = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(stats.at("malformed").as<int>(), 0);
  EXPECT_EQ((stats.at("done").as<std::map<std::string, int>>()), (std::map<std::string, int>{{"ok", 1}}));
  EXPECT_EQ(host.Stop(), 0);
}

}  // namespace
}  // namespace umi::testing
