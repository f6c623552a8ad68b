#include "transport/protocol.h"

#include <gtest/gtest.h>
#include <msgpack.hpp>

#include <cmath>
#include <cstring>
#include <functional>

namespace umi {
namespace {

template <typename T>
std::string Pack(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return std::string(buffer.data(), buffer.size());
}

std::string PackMap(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fill, uint32_t size) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(size);
  fill(packer);
  return std::string(buffer.data(), buffer.size());
}

TEST(Protocol, DecodesAFullTask) {
  const std::string bytes = PackMap(
      [](auto& p) {
        p.pack("v").pack(1);
        p.pack("id").pack("t1");
        p.pack("plugin").pack("sleep");
        p.pack("input").pack(std::map<std::string, int>{{"ms", 5}});
        p.pack("priority").pack(-3);
        p.pack("timeout_ms").pack(100);
        p.pack("resources").pack_map(2);
        p.pack("cpu_threads").pack(4);
        p.pack("gpu_count").pack(0.5);
        p.pack("unknown_key").pack("ignored");
      },
      8);
  const Message message = DecodeMessage(bytes);
  ASSERT_TRUE(std::holds_alternative<TaskMessage>(message));
  const TaskMessage& task = std::get<TaskMessage>(message);
  EXPECT_EQ(task.id, "t1");
  EXPECT_EQ(task.plugin, "sleep");
  EXPECT_EQ(task.priority, -3);
  EXPECT_EQ(task.timeout_ms, 100);
  ASSERT_TRUE(task.resources);
  EXPECT_EQ(task.resources->cpu_threads, 4);
  EXPECT_EQ(task.resources->gpu_count, 0.5);
  const auto input = msgpack::unpack(task.input_msgpack.data(), task.input_msgpack.size());
  EXPECT_EQ((input.get().as<std::map<std::string, int>>().at("ms")), 5);
}

TEST(Protocol, AbsentInputIsAnEmptyMap) {
  const auto message = DecodeMessage(Pack(std::map<std::string, std::string>{{"id", "a"}, {"plugin", "noop"}}));
  ASSERT_TRUE(std::holds_alternative<TaskMessage>(message));
  EXPECT_EQ(std::get<TaskMessage>(message).input_msgpack, std::string("\x80", 1));
}

// A BadMessage as the wire shows it: the code's word and the message.
struct Refusal {
  std::optional<std::string> id;
  std::string plugin;
  std::string code;
  std::string message;
};

Refusal Bad(const std::string& bytes) {
  const Message message = DecodeMessage(bytes);
  EXPECT_TRUE(std::holds_alternative<BadMessage>(message));
  if (!std::holds_alternative<BadMessage>(message)) return {};
  const BadMessage& bad = std::get<BadMessage>(message);
  return {bad.id, bad.plugin, std::string(WireCode(bad.status.code())), bad.status.message()};
}

TEST(Protocol, MalformedInputIsDescribed) {
  EXPECT_EQ(Bad("").message, "truncated msgpack");
  EXPECT_EQ(Bad("\x82\xa2id").message, "truncated msgpack");
  EXPECT_NE(Bad("\xc1").message.find("not msgpack"), std::string::npos);
  EXPECT_EQ(Bad(Pack(42)).message, "a message must be a msgpack map");
  EXPECT_NE(Bad(Pack(std::map<std::string, int>{{"id", 1}})).message.find("'id' must be a string"),
            std::string::npos);
  EXPECT_NE(Bad(Pack(std::map<std::string, std::string>{{"id", ""}, {"plugin", "p"}})).message.find("1..256"),
            std::string::npos);
  EXPECT_NE(Bad(Pack(std::map<std::string, std::string>{{"id", std::string(257, 'x')}, {"plugin", "p"}}))
                .message.find("got 257"),
            std::string::npos);
  EXPECT_NE(Bad(Pack(std::map<std::string, int>{{"x", 1}}) + "z").message.find("trailing"), std::string::npos);
}

TEST(Protocol, BadFieldsKeepTheIdSoTheHostCanAnswer) {
  const Refusal bad = Bad(PackMap(
      [](auto& p) {
        p.pack("id").pack("t9");
        p.pack("plugin").pack("sleep");
        p.pack("timeout_ms").pack(-1);
      },
      3));
  EXPECT_EQ(bad.id, "t9");
  EXPECT_EQ(bad.plugin, "sleep");
  EXPECT_EQ(bad.code, "bad_request");
  EXPECT_EQ(bad.message, "'timeout_ms' must be 0..3153600000000, got -1");

  const Refusal no_plugin = Bad(Pack(std::map<std::string, std::string>{{"id", "t"}}));
  EXPECT_EQ(no_plugin.message, "missing 'plugin'");
  const Refusal input = Bad(Pack(std::map<std::string, std::string>{{"id", "t"}, {"plugin", "p"}, {"input", "x"}}));
  EXPECT_EQ(input.message, "'input' must be a map");
}

TEST(Protocol, UnknownVersionIsRefused) {
  const Refusal bad = Bad(PackMap(
      [](auto& p) {
        p.pack("v").pack(2);
        p.pack("id").pack("t");
        p.pack("plugin").pack("noop");
      },
      3));
  EXPECT_EQ(bad.code, "unsupported_version");
  EXPECT_EQ(bad.id, "t");
}

TEST(Protocol, DeepNestingIsRefusedNotFollowed) {
  std::string deep(1000, '\x91');  // 1000 nested one-element arrays
  deep += '\x00';
  EXPECT_EQ(Bad(deep).code, "bad_request");
}

TEST(Protocol, ControlRequestsDecode) {
  const Message message = DecodeMessage(Pack(std::map<std::string, std::string>{{"op", "cancel"}, {"id", "t"}}));
  ASSERT_TRUE(std::holds_alternative<ControlRequest>(message));
  EXPECT_EQ(std::get<ControlRequest>(message).op, "cancel");
  EXPECT_EQ(std::get<ControlRequest>(message).id, "t");
}

TEST(Protocol, ResultsEncodeEveryField) {
  TaskResult result;
  result.id = "t";
  result.plugin = "p";
  result.output_msgpack = Pack(std::map<std::string, int>{{"n", 7}});
  result.queued_ms = 1.5;
  result.run_ms = 2.5;
  result.started_at = 100.25;
  result.finished_at = 100.5;
  Allocation allocation;
  allocation.cpu_cores = Quantity::FromDouble(0.5);
  allocation.cpu_threads = 2;
  allocation.memory_mb = 64;
  allocation.gpu_ids = {1};
  result.allocation = allocation;
  const std::string bytes = EncodeResult(result, "h");
  const auto handle = msgpack::unpack(bytes.data(), bytes.size());
  const auto map = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(map.at("v").as<int>(), 1);
  EXPECT_EQ(map.at("status").as<std::string>(), "ok");
  EXPECT_EQ(map.at("host").as<std::string>(), "h");
  EXPECT_EQ((map.at("output").as<std::map<std::string, int>>().at("n")), 7);
  EXPECT_EQ(map.at("started_at").as<double>(), 100.25);
  const auto a = map.at("allocation").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(a.at("cpu_cores").as<double>(), 0.5);
  EXPECT_EQ(a.at("gpu_ids").as<std::vector<int>>(), std::vector<int>{1});
  EXPECT_EQ(map.count("error"), 0u);
}

// A plugin's error may carry a detail (a traceback): in the error map, as
// valid text; absent when there is none.
TEST(Protocol, AnErrorsDetailIsEncodedWhenThereIsOne) {
  TaskResult result;
  result.id = "t";
  result.plugin = "p";
  result.status = TaskStatus::kError;
  result.error_code = "plugin_error";
  result.error_message = "KeyError: 'x'";
  for (const std::string& detail : {std::string("Traceback (most recent call last):\n  ...\xff"), std::string()}) {
    result.error_detail = detail;
    const std::string bytes = EncodeResult(result, "h");
    const auto handle = msgpack::unpack(bytes.data(), bytes.size());
    const auto map = handle.get().as<std::map<std::string, msgpack::object>>();
    const auto error = map.at("error").as<std::map<std::string, std::string>>();
    EXPECT_EQ(error.at("code"), "plugin_error");
    if (detail.empty()) {
      EXPECT_EQ(error.count("detail"), 0u);
    } else {
      EXPECT_EQ(error.at("detail"), "Traceback (most recent call last):\n  ...\xEF\xBF\xBD");
    }
  }
}

TEST(Protocol, RejectionsCarryCodeAndNoTimes) {
  const std::string bytes = EncodeResult(RejectedResult(std::nullopt, "", Status(ErrorCode::kBadRequest, "why")), "h");
  const auto handle = msgpack::unpack(bytes.data(), bytes.size());
  const auto map = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(map.count("id"), 0u);
  EXPECT_EQ(map.count("started_at"), 0u);
  EXPECT_EQ(map.at("status").as<std::string>(), "rejected");
  const auto error = map.at("error").as<std::map<std::string, std::string>>();
  EXPECT_EQ(error.at("code"), "bad_request");
  EXPECT_EQ(error.at("message"), "why");
}

// A task whose resources hold one key set by `fill`.
std::string WithResource(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fill) {
  return PackMap(
      [&](auto& p) {
        p.pack("id").pack("r");
        p.pack("plugin").pack("sleep");
        p.pack("resources").pack_map(1);
        fill(p);
      },
      3);
}

TEST(Protocol, NumbersAreRangeCheckedBeforeTheyAreNarrowed) {
  // 2^32 + 1 threads used to become 1, 2^32 used to become 0.
  for (const uint64_t threads : {uint64_t{1} << 32, (uint64_t{1} << 32) + 1}) {
    const Refusal bad = Bad(WithResource([&](auto& p) { p.pack("cpu_threads").pack(threads); }));
    EXPECT_EQ(bad.message, "'resources.cpu_threads' must be 0..65536, got " + std::to_string(threads));
    EXPECT_EQ(bad.id, "r");
  }
  for (const double value : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    const Refusal bad = Bad(WithResource([&](auto& p) { p.pack("cpu_cores").pack(value); }));
    EXPECT_EQ(bad.message, "'resources.cpu_cores' must be a finite number");  // used to say "must not be negative"
  }
  EXPECT_NE(Bad(WithResource([](auto& p) { p.pack("gpu_count").pack(1e300); })).message.find("must be 0..1024"),
            std::string::npos);
  EXPECT_NE(Bad(WithResource([](auto& p) { p.pack("gpu_count").pack(0.00004); })).message.find("below the smallest unit"),
            std::string::npos)
      << "a positive value must not round to 0 and run as a CPU task";
  const Message fine = DecodeMessage(WithResource([](auto& p) { p.pack("cpu_threads").pack(65536); }));
  ASSERT_TRUE(std::holds_alternative<TaskMessage>(fine));
  EXPECT_EQ(std::get<TaskMessage>(fine).resources->cpu_threads, 65536);
}

TEST(Protocol, IdsPluginNamesAndOpsMustBeUtf8) {
  const Refusal id = Bad(Pack(std::map<std::string, std::string>{{"id", "\xff"}, {"plugin", "noop"}}));
  EXPECT_EQ(id.message, "'id' is not valid UTF-8");
  EXPECT_FALSE(id.id.has_value()) << "an invalid id is never echoed";
  const Refusal plugin = Bad(Pack(std::map<std::string, std::string>{{"id", "a"}, {"plugin", "\xc3("}}));
  EXPECT_EQ(plugin.message, "'plugin' is not valid UTF-8");
  EXPECT_EQ(plugin.plugin, "");
  EXPECT_EQ(Bad(Pack(std::map<std::string, std::string>{{"op", "\xff"}})).message, "'op' is not valid UTF-8");
}

std::map<std::string, msgpack::object> Unpacked(const std::string& bytes, msgpack::object_handle& handle) {
  handle = msgpack::unpack(bytes.data(), bytes.size());
  return handle.get().as<std::map<std::string, msgpack::object>>();
}

TEST(Protocol, EventsAndControlRepliesAreEncodedHere) {
  msgpack::object_handle h;
  const auto progress = Unpacked(EncodeProgressEvent("t", "scenes", 1.7, ""), h);
  EXPECT_EQ(progress.at("progress").as<double>(), 1.0);
  EXPECT_EQ(progress.count("message"), 0u);
  EXPECT_EQ(progress.at("v").as<int>(), kProtocolVersion);
  const auto event = Unpacked(EncodeTaskEvent("t", "scenes"), h);
  EXPECT_EQ(event.at("id").as<std::string>(), "t");
  const auto error = Unpacked(EncodeControlError(Status(ErrorCode::kNotFound, "no task 'x\xff'")), h);
  EXPECT_FALSE(error.at("ok").as<bool>());
  const auto detail = error.at("error").as<std::map<std::string, std::string>>();
  EXPECT_EQ(detail.at("code"), "not_found");
  EXPECT_EQ(detail.at("message"), "no task 'x\xEF\xBF\xBD'") << "replies stay valid UTF-8";
  const auto health = Unpacked(EncodeHealthReply(true, "h1", 3), h);
  EXPECT_EQ(health.at("status").as<std::string>(), "draining");
  EXPECT_EQ(health.at("plugins").as<int>(), 3);
  const auto reload = Unpacked(EncodeReloadReply({"a"}, {}, {"http"}, {"scheduler"}), h);
  EXPECT_EQ(reload.at("restart_needed").as<std::vector<std::string>>(), std::vector<std::string>{"http"});
  EXPECT_EQ(reload.at("applied").as<std::vector<std::string>>(), std::vector<std::string>{"scheduler"});
  EXPECT_EQ(Unpacked(EncodeCancelReply("queued"), h).at("state").as<std::string>(), "queued");
}

TEST(Protocol, TheFingerprintTellsTasksApartAndRetriesTogether) {
  TaskMessage a;
  a.id = "x";
  a.plugin = "sleep";
  a.input_msgpack = Pack(std::map<std::string, int>{{"ms", 1}});
  TaskMessage b = a;
  EXPECT_EQ(Fingerprint(a), Fingerprint(b));
  b.id = "y";
  EXPECT_EQ(Fingerprint(a), Fingerprint(b)) << "the id is not part of it";
  b.input_msgpack = Pack(std::map<std::string, int>{{"ms", 2}});
  EXPECT_NE(Fingerprint(a), Fingerprint(b));
  TaskMessage c = a;
  c.resources.emplace();
  c.resources->cpu_threads = 2;
  EXPECT_NE(Fingerprint(a), Fingerprint(c));
  TaskMessage d = a;
  d.plugin = "noop";
  EXPECT_NE(Fingerprint(a), Fingerprint(d));
}

// A message over the decoding limits still names its task when its id
// could be read (before: rejected without an id, so a producer could not
// match the answer); plain text is called what it is (before: "trailing
// bytes after the msgpack map").
TEST(Protocol, AMessageOverTheLimitsIsRefusedWithItsIdAndTextIsCalledText) {
  msgpack::sbuffer big;
  msgpack::packer<msgpack::sbuffer> pack(big);
  pack.pack_map(3);
  pack.pack("id").pack("big-1");
  pack.pack("plugin").pack("noop");
  pack.pack("input").pack_map(1);
  pack.pack("blob");
  const std::string blob(65u << 20, 'x');
  pack.pack_bin(static_cast<uint32_t>(blob.size()));
  pack.pack_bin_body(blob.data(), static_cast<uint32_t>(blob.size()));
  const Message refused = DecodeMessage(std::string_view(big.data(), big.size()));
  ASSERT_TRUE(std::holds_alternative<BadMessage>(refused));
  EXPECT_EQ(std::get<BadMessage>(refused).id, "big-1");
  EXPECT_NE(std::get<BadMessage>(refused).status.message().find("over the limits"), std::string::npos)
      << std::get<BadMessage>(refused).status.message();

  const Message text = DecodeMessage("hello world, a task please\n");
  ASSERT_TRUE(std::holds_alternative<BadMessage>(text));
  EXPECT_EQ(std::get<BadMessage>(text).status.message(), "a message must be a msgpack map; this one is plain text");
}

// A second input with the same std::hash as a task's: libstdc++'s
// _Hash_bytes (MurmurHash64A-like, seed 0xc70f6907) is invertible block by
// block, so changing one 8-byte block and solving for the next gives a twin.
std::string ForgeStdHashTwin(std::string bytes, size_t block) {
  constexpr uint64_t kMul = (uint64_t{0xc6a4a793} << 32) + 0x5bd1e995;
  uint64_t inverse = kMul;  // Newton: kMul * inverse == 1 (mod 2^64)
  for (int i = 0; i < 6; ++i) inverse *= 2 - kMul * inverse;
  auto shift_mix = [](uint64_t v) { return v ^ (v >> 47); };  // its own inverse
  auto load = [&bytes](size_t at) {
    uint64_t v;
    std::memcpy(&v, bytes.data() + at, 8);
    return v;
  };
  auto data = [&](uint64_t v) { return shift_mix(v * kMul) * kMul; };
  uint64_t state = 0xc70f6907ULL ^ (bytes.size() * kMul);
  for (size_t b = 0; b < block; ++b) state = (state ^ data(load(8 * b))) * kMul;
  const uint64_t after = (state ^ data(load(8 * block))) * kMul;
  const uint64_t wanted_next = after ^ data(load(8 * block + 8));
  bytes[8 * block + 7] ^= 0x80;  // bit 63 of the block
  const uint64_t forged_after = (state ^ data(load(8 * block))) * kMul;
  const uint64_t next = shift_mix((wanted_next ^ forged_after) * inverse) * inverse;
  std::memcpy(bytes.data() + 8 * block + 8, &next, 8);
  return bytes;
}

// Issue 27: whoever knew a task's id and input could send a twin with the
// same fingerprint first; the real task was then answered `deduplicated`
// with the twin's result and never ran. The fingerprint is keyed now.
TEST(Protocol, ATwinForgedAgainstAnUnkeyedHashHasItsOwnFingerprint) {
  TaskMessage real;
  real.id = "x";
  real.plugin = "checksum";
  real.input_msgpack = Pack(std::map<std::string, std::string>{{"data", std::string(64, 'A')}});
  TaskMessage twin = real;
  twin.input_msgpack = ForgeStdHashTwin(real.input_msgpack, 1);  // blocks 1-2: inside the string
  ASSERT_NE(twin.input_msgpack, real.input_msgpack);
  ASSERT_EQ(std::hash<std::string_view>{}(twin.input_msgpack), std::hash<std::string_view>{}(real.input_msgpack))
      << "the twin is a real forgery of std::hash";
  EXPECT_NE(Fingerprint(twin), Fingerprint(real));
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

// A farm keeps a result with its task's fingerprint; a retry gets the
// result back byte for byte, whatever the map's header size.
TEST(Protocol, AKeptResultGivesBackTheResultAsSentAndItsFingerprint) {
  for (const size_t fields : {size_t{1}, size_t{14}, size_t{15}, size_t{16}, size_t{40}}) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> p(buffer);
    p.pack_map(static_cast<uint32_t>(fields));
    for (size_t i = 0; i < fields; ++i) p.pack("k" + std::to_string(i)).pack(i);
    const std::string result(buffer.data(), buffer.size());
    const TaskFingerprint fingerprint{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
    const std::string kept = WithFingerprint(result, fingerprint);
    const msgpack::object_handle decoded = msgpack::unpack(kept.data(), kept.size());
    EXPECT_EQ(decoded.get().via.map.size, fields + 1) << "a valid map with one field more";
    const auto split = SplitFingerprint(kept);
    ASSERT_TRUE(split.has_value()) << fields;
    EXPECT_EQ(split->first, result) << fields;
    EXPECT_EQ(split->second, fingerprint);
  }
  EXPECT_FALSE(SplitFingerprint(std::string("\x81\xa1k\x01", 4)).has_value()) << "kept without a fingerprint";
}

}  // namespace
}  // namespace umi
