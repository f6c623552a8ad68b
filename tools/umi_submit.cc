// umi-submit: send tasks to umi hosts from JSON lines, write results as JSON lines.
//
//   umi-submit tasks.jsonl > results.jsonl
//   echo '{"plugin":"sleep","input":{"ms":100}}' | umi-submit --rpc tcp://10.0.0.5:5557
//   umi-submit --op stats
//   umi-submit --redis redis://cache:6379/0 tasks.jsonl    (a farm on Redis Streams)
//
// Each input line is a task object: {"id", "plugin", "input", "priority",
// "timeout_ms", "resources"}, read as it comes: tasks go out while later
// lines are read, --max-in-flight at a time; a bad line ends the input (what
// came before it is answered, exit 2). A missing id becomes "<run>-<line>", <run>
// random for each run (a host answers a re-sent id with the stored result, so
// two runs must never share ids). Strings that are not valid UTF-8 in a
// result are written with U+FFFD in their place. On a
// terminal, stderr shows a progress bar (counts, rate, ETA). Exit status:
// 0 when every task ended ok, 1 when any did not, 2 on bad input or usage.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <umi/client.hpp>
#include <umi/redis_client.hpp>

#include "transport/protocol.h"
#include "transport/redis_cluster.h"
#include "transport/redis_connection.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <iostream>
#include <optional>
#include <random>

using json = nlohmann::json;

namespace {

// JSON text that never throws: invalid UTF-8 (a plugin's output may carry
// any bytes) becomes U+FFFD.
std::string Dump(const json& value, int indent = -1) {
  return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

// Identifies this run in default task ids.
std::string RunPrefix() {
  std::random_device random;
  char prefix[24];
  std::snprintf(prefix, sizeof(prefix), "%08x%08x", random(), random());
  return prefix;
}

std::string ToMsgpack(const json& value) {
  const std::vector<uint8_t> bytes = json::to_msgpack(value);
  return std::string(bytes.begin(), bytes.end());
}

std::string Joined(const std::vector<std::string>& values) {
  std::string text;
  for (const std::string& value : values) text += (text.empty() ? "" : " ") + value;
  return text.empty() ? "-" : text;
}

// Lines from a file descriptor, read only as far as they are there: a
// producer writing tasks into a pipe gets each one answered while it has not
// written the next.
class LineSource {
 public:
  enum class Got { kLine, kNone, kEnd };
  explicit LineSource(int fd) : fd_(fd) {}

  // kNone: no complete line now (only when !block).
  Got Next(std::string& line, bool block) {
    while (true) {
      if (const size_t end = buffer_.find('\n', scanned_); end != std::string::npos) {
        line.assign(buffer_, 0, end);
        buffer_.erase(0, end + 1);
        scanned_ = 0;
        return Got::kLine;
      }
      scanned_ = buffer_.size();
      if (eof_) {
        if (buffer_.empty()) return Got::kEnd;
        line = std::move(buffer_);  // a last line without its newline
        buffer_.clear();
        scanned_ = 0;
        return Got::kLine;
      }
      pollfd readable{fd_, POLLIN, 0};
      if (!block && poll(&readable, 1, 0) == 0) return Got::kNone;
      char chunk[65536];
      const ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
      } else {
        buffer_.append(chunk, static_cast<size_t>(n));
      }
    }
  }

 private:
  int fd_;
  std::string buffer_;
  size_t scanned_ = 0;  // no newline before this offset
  bool eof_ = false;
};

// Arrays and objects nest at most this deep in a line: as deep as the host
// takes a message (its msgpack depth limit), and a parser's recursion stays
// small (100,000 levels overflowed the stack).
constexpr int kMaxJsonDepth = 64;

// Whether `line` nests arrays and objects deeper than kMaxJsonDepth (outside
// strings), found without parsing it.
bool TooDeep(std::string_view line) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// Tasks from JSON lines, one at a time. A bad line ends the input; what was
// sent before it is still answered.
class TaskReader {
 public:
  enum class Next { kTask, kNone, kEnd, kBad };
  TaskReader(int fd, std::string name) : lines_(fd), name_(std::move(name)), run_(RunPrefix()) {}

  Next Read(umi::TaskRequest& request, bool block) {
    std::string line;
    while (true) {
      switch (lines_.Next(line, block)) {
        case LineSource::Got::kNone: return Next::kNone;
        case LineSource::Got::kEnd: return Next::kEnd;
        case LineSource::Got::kLine: break;
      }
      ++number_;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      return Parse(line, request) ? Next::kTask : Next::kBad;
    }
  }
  const std::string& error() const { return error_; }

 private:
  bool Parse(const std::string& line, umi::TaskRequest& request) {
    const std::string where = name_ + ":" + std::to_string(number_) + ": ";
    if (TooDeep(line)) {
      return Fail(where + "arrays and objects nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    json task = json::parse(line, nullptr, false);
    if (task.is_discarded() || !task.is_object()) return Fail(where + "not a JSON object");
    request = umi::TaskRequest{};
    request.id = task.value("id", run_ + "-" + std::to_string(number_));
    if (!task.contains("plugin") || !task["plugin"].is_string()) return Fail(where + "\"plugin\" (a string) is required");
    request.plugin = task["plugin"];
    if (task.contains("input")) {
      if (!task["input"].is_object()) return Fail(where + "\"input\" must be an object");
      request.input = ToMsgpack(task["input"]);
    }
    if (task.contains("resources")) request.resources = ToMsgpack(task["resources"]);
    request.priority = task.value("priority", 0);
    request.timeout_ms = task.value("timeout_ms", 0);
    if (!ids_.insert(request.id).second) return Fail(where + "duplicate id \"" + request.id + "\"");
    return true;
  }
  bool Fail(std::string error) {
    error_ = std::move(error);
    return false;
  }

  LineSource lines_;
  const std::string name_, run_;
  int number_ = 0;
  std::set<std::string> ids_;
  std::string error_;
};

// Submits what the input holds now, while fewer than `max_in_flight` are
// unanswered (waiting for a line only when nothing is in flight); false once
// the input ended or went bad.
template <typename Submit>
bool Feed(TaskReader& reader, bool& bad, size_t in_flight, size_t max_in_flight, size_t& sent, Submit submit) {
  umi::TaskRequest request;
  while (in_flight < max_in_flight) {
    switch (reader.Read(request, /*block=*/in_flight == 0)) {
      case TaskReader::Next::kTask:
        submit(std::move(request));
        ++sent;
        ++in_flight;
        break;
      case TaskReader::Next::kNone:
        return true;
      case TaskReader::Next::kBad:
        bad = true;
        return false;
      case TaskReader::Next::kEnd:
        return false;
    }
  }
  return true;
}

// While the input is open, results are awaited in short slices so that new
// lines are read between them.
constexpr auto kReadSlice = std::chrono::milliseconds(20);

// The input's descriptor (stdin for "-"), or -1 after saying why.
int OpenInput(const std::string& path) {
  if (path == "-") return STDIN_FILENO;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::cerr << "umi-submit: cannot open " << path << ": " << std::strerror(errno) << "\n";
  return fd;
}

// The progress bar; the total is known once the input has ended.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled), start_(std::chrono::steady_clock::now()) {}
  void SetTotal(size_t total) { total_ = total; }
  void Update(size_t done, size_t failed, bool final = false) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    if (!total_) {  // still reading: no total, no ETA
      std::fprintf(stderr, "\r%zu done, ok %zu failed %zu %.1f/s (reading input)  ", done, done - failed, failed, rate);
      if (final) std::fprintf(stderr, "\n");
      return;
    }
    const int width = 30;
    const int filled = *total_ ? static_cast<int>(width * done / *total_) : width;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu ok %zu failed %zu %.1f/s ETA %.0fs  ",
                 std::string(static_cast<size_t>(filled), '=').c_str(),
                 std::string(static_cast<size_t>(width - filled), ' ').c_str(), done, *total_, done - failed, failed,
                 rate, rate > 0 ? static_cast<double>(*total_ - done) / rate : 0.0);
    if (final) std::fprintf(stderr, "\n");
  }

 private:
  std::optional<size_t> total_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_{};
};

// The last progress line, and the exit status: 2 for a bad input line
// (named; what came before it was answered), 1 if any task failed.
int Finish(Progress& progress, const TaskReader& reader, bool bad, size_t done, size_t failed) {
  progress.Update(done, failed, true);
  std::cout.flush();
  if (bad) {
    std::cerr << "umi-submit: " << reader.error() << " (the " << done << " task(s) before it were sent and answered)\n";
    return 2;
  }
  return failed == 0 ? 0 : 1;
}

// Redis Streams (docs/scale-out.md), through umi/redis_client.hpp: each
// task goes to umi:tasks:<plugin> with reply_to a stream of this run's own,
// the first result per id is kept (a task whose host died runs again), and
// the stream is deleted at the end. Tasks wait in Redis for a host, so
// nothing is re-sent.
int RunOnRedis(const std::string& url, TaskReader& reader, size_t max_in_flight, std::chrono::milliseconds wait,
               Progress& progress) {
  if (std::string error; !umi::ParseRedisUrl(url, &error)) {
    std::cerr << "umi-submit: " << error << "\n";
    return 2;
  }
  std::optional<umi::RedisClient> client;
  try {
    client.emplace(umi::RedisClientOptions{.url = url, .timeout = wait + std::chrono::seconds(5)});
  } catch (const umi::RedisError& error) {
    std::cerr << "umi-submit: " << error.what() << "\n";
    return 1;
  }
  // A task for a plugin that no live host offers waits in Redis until one
  // does: said once per plugin, on stderr.
  std::set<std::string> served, warned;
  bool know_served = false;
  if (auto parsed = umi::RedisUrl::Parse(url); parsed.ok()) {
    umi::RedisConnection view;
    if (view.Connect(parsed.value(), wait).ok()) {
      const json cluster = umi::ReadCluster(view);
      for (const json& host : cluster["hosts"]) {
        if (!host.value("alive", false)) continue;
        std::istringstream plugins(host.value("plugins", ""));
        for (std::string plugin; std::getline(plugins, plugin, ',');) served.insert(plugin);
      }
      know_served = true;
    }
  }
  size_t sent = 0, done = 0, failed = 0;
  bool reading = true, bad = false;
  auto last_result = std::chrono::steady_clock::now();
  try {
    while (true) {
      if (reading) {
        reading = Feed(reader, bad, client->pending(), max_in_flight, sent, [&](umi::TaskRequest request) {
          if (know_served && !served.count(request.plugin) && warned.insert(request.plugin).second) {
            std::cerr << "umi-submit: warning: no live host serves plugin '" << request.plugin
                      << "'; its tasks wait in Redis until one does\n";
          }
          client->Submit(request);
          last_result = std::chrono::steady_clock::now();  // the wait counts from the latest task sent too
        });
        if (!reading) progress.SetTotal(sent);
      }
      if (!reading && done == sent) break;
      const std::optional<umi::TaskOutcome> outcome = client->Next(reading ? kReadSlice : wait);
      if (!outcome) {
        if (reading && std::chrono::steady_clock::now() - last_result < wait) continue;
        std::cerr << "\numi-submit: no result for " << wait.count() / 1000.0 << " s; " << client->pending()
                  << " task(s) unanswered (they stay queued in Redis)\n";
        return 1;
      }
      last_result = std::chrono::steady_clock::now();
      ++done;
      if (outcome->status != "ok") ++failed;
      std::cout << Dump(json::from_msgpack(outcome->result, true, false)) << std::endl;  // a reader sees it now
      progress.Update(done, failed);
    }
  } catch (const umi::RedisError& error) {
    std::cerr << "\numi-submit: " << error.what() << "\n";
    return 1;
  }
  return Finish(progress, reader, bad, done, failed);
}

// --op cluster: the live hosts (their heartbeats) and each plugin's backlog.
int PrintCluster(umi::RedisConnection& redis) {
  json view = umi::ReadCluster(redis);
  view["ok"] = true;
  std::cout << Dump(view, 2) << "\n";
  return 0;
}

}  // namespace

// The word after `label` in a key file ("public <z85>"), or the first word
// when label is empty (a .pub file).
std::string KeyFromFile(const std::string& path, const std::string& label) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string first, second;
    words >> first >> second;
    if (label.empty() && first.size() == 40) return first;
    if (!label.empty() && first == label) return second;
  }
  return {};
}

// What the command line says.
struct SubmitOptions {
  std::string input_path = "-";
  umi::ClientOptions client;
  std::string op, op_id;
  int retry_after_ms = 30000;
  size_t max_in_flight = 1000;
  double wait_s = 3600;
  bool quiet = false;
  std::string redis_url;
  std::string curve_server, curve_key;
};

void AddOptions(CLI::App& app, SubmitOptions& o) {
  app.add_option("file", o.input_path, "JSON lines of tasks; - for stdin")->capture_default_str();
  // One value per flag (repeat the flag for several hosts), so a file name
  // after it stays the positional argument.
  app.add_option("--rpc", o.client.rpc, "Host rpc endpoint; repeat for several hosts (default tcp://127.0.0.1:5557)")
      ->allow_extra_args(false);
  app.add_option("--redis", o.redis_url,
                 "Instead of ZeroMQ: a farm on Redis Streams (redis://[:password@]host:port/db or unix:///path)");
  app.add_option("--tasks", o.client.tasks, "Instead of rpc: PUSH endpoint ('@' binds, for hosts that connect)");
  app.add_option("--results", o.client.results, "Instead of rpc: PULL endpoint ('@' binds)");
  app.add_option("--retry-after-ms", o.retry_after_ms, "Re-send a task with no result after this long (plus its timeout_ms)")
      ->capture_default_str();
  app.add_option("--attempts", o.client.max_attempts, "Sends in a row with no answer before a task gives up (a host saying it still holds the task starts the count again)")->capture_default_str();
  app.add_option("--max-in-flight", o.max_in_flight, "Tasks sent and not yet answered")->capture_default_str();
  app.add_option("--wait-s", o.wait_s, "Give up when no result arrives for this long")->capture_default_str();
  app.add_option("--op", o.op,
                 "Send a control request instead (health, stats, drain, cancel, result, reload) and print the reply; "
                 "with --redis: cluster (live hosts and each plugin's backlog) or result (a result kept in Redis)");
  app.add_option("--id", o.op_id, "Task id for --op cancel and --op result");
  app.add_flag("--quiet", o.quiet, "No progress bar");
  app.add_option("--curve-server", o.curve_server, "The host's CURVE public key file (its keygen .pub)")
      ->check(CLI::ExistingFile);
  app.add_option("--curve-key", o.curve_key, "This client's CURVE key file (keygen .key); its .pub must be authorized")
      ->check(CLI::ExistingFile);
}

// The CURVE keys into the client options; false (said on stderr) when they cannot be used.
bool LoadCurveKeys(SubmitOptions& o) {
  if (o.curve_server.empty() != o.curve_key.empty()) {
    std::cerr << "umi-submit: --curve-server and --curve-key go together\n";
    return false;
  }
  if (o.curve_server.empty()) return true;
  o.client.curve_server_key = KeyFromFile(o.curve_server, "");
  o.client.curve_public_key = KeyFromFile(o.curve_key, "public");
  o.client.curve_secret_key = KeyFromFile(o.curve_key, "secret");
  if (o.client.curve_server_key.size() != 40 || o.client.curve_public_key.size() != 40 ||
      o.client.curve_secret_key.size() != 40) {
    std::cerr << "umi-submit: cannot read the CURVE keys (make them with umi-host keygen)\n";
    return false;
  }
  return true;
}

// --op result --id ID on a farm: the result its host kept under
// umi:result:<id> (for dedup.window_s), as {state, result}.
int PrintKeptResult(umi::RedisConnection& redis, const std::string& id) {
  auto kept = redis.Command({"GET", umi::RedisResultKey(id)});
  if (!kept.ok()) {
    std::cerr << "umi-submit: " << kept.status().message() << "\n";
    return 1;
  }
  json answer = {{"state", "unknown"}};
  if (kept.value()->type == REDIS_REPLY_STRING) {
    answer["state"] = "finished";
    // The result as it was sent, without the fingerprint the farm keeps beside it.
    std::string result(kept.value()->str, kept.value()->len);
    if (auto split = umi::SplitFingerprint(result)) result = std::move(split->first);
    answer["result"] = json::from_msgpack(result, true, false);
  }
  std::cout << Dump(answer, 2) << "\n";
  return 0;
}

// --redis: the tasks through the farm's streams, or --op cluster / result.
int SubmitToRedis(const SubmitOptions& o, std::chrono::milliseconds wait) {
  if ((!o.op.empty() && o.op != "cluster" && o.op != "result") || !o.client.rpc.empty() || !o.client.tasks.empty()) {
    std::cerr << "umi-submit: with --redis, --op is cluster or result; give no --rpc or --tasks\n";
    return 2;
  }
  if (o.op == "result" && o.op_id.empty()) {
    std::cerr << "umi-submit: --op result needs --id\n";
    return 2;
  }
  if (!o.op.empty()) {
    auto url = umi::RedisUrl::Parse(o.redis_url);
    umi::RedisConnection redis;
    const umi::Status connected = url.ok() ? redis.Connect(url.value(), wait) : url.status();
    if (!connected.ok()) {
      std::cerr << "umi-submit: " << connected.message() << "\n";
      return 1;
    }
    return o.op == "cluster" ? PrintCluster(redis) : PrintKeptResult(redis, o.op_id);
  }
  const int fd = OpenInput(o.input_path);
  if (fd < 0) return 2;
  TaskReader reader(fd, o.input_path == "-" ? "stdin" : o.input_path);
  Progress progress(!o.quiet && isatty(STDERR_FILENO));
  return RunOnRedis(o.redis_url, reader, o.max_in_flight, wait, progress);
}

// --op over rpc: the reply, printed.
int SendControl(umi::Client& client, const SubmitOptions& o, std::chrono::milliseconds wait) {
  if (o.client.rpc.empty()) {
    std::cerr << "umi-submit: --op needs --rpc\n";
    return 2;
  }
  const auto reply = client.Control(o.op, wait, o.op_id);
  if (!reply) {
    std::cerr << "umi-submit: no reply from " << o.client.rpc.front() << "\n";
    return 1;
  }
  const json answer = json::from_msgpack(*reply, true, false);
  if (answer.is_discarded()) {
    std::cerr << "umi-submit: the reply is not msgpack\n";
    return 1;
  }
  std::cout << Dump(answer, 2) << "\n";
  return answer.value("ok", false) ? 0 : 1;
}

// Every task of the input through `client`, at most max_in_flight at once;
// each result a JSON line on stdout as it comes.
int SubmitAll(umi::Client& client, const SubmitOptions& o, std::chrono::milliseconds wait) {
  const int fd = OpenInput(o.input_path);
  if (fd < 0) return 2;
  TaskReader reader(fd, o.input_path == "-" ? "stdin" : o.input_path);
  Progress progress(!o.quiet && isatty(STDERR_FILENO));
  size_t sent = 0, done = 0, failed = 0;
  bool reading = true, bad = false;
  auto last_result = std::chrono::steady_clock::now();
  while (true) {
    if (reading) {
      reading = Feed(reader, bad, client.pending(), o.max_in_flight, sent, [&](umi::TaskRequest request) {
        client.Submit(std::move(request));
        last_result = std::chrono::steady_clock::now();  // the wait counts from the latest task sent too
      });
      if (!reading) progress.SetTotal(sent);
    }
    if (!reading && done == sent) break;
    const auto outcome = client.Next(reading ? kReadSlice : wait);
    if (!outcome) {
      if (reading && std::chrono::steady_clock::now() - last_result < wait) continue;
      std::cerr << "\numi-submit: no result for " << o.wait_s << " s; " << client.pending() << " task(s) unanswered\n";
      return 1;
    }
    last_result = std::chrono::steady_clock::now();
    ++done;
    if (outcome->status != "ok") ++failed;
    const json result = outcome->result.empty() ? json() : json::from_msgpack(outcome->result, true, false);
    if (result.is_object()) {
      std::cout << Dump(result) << "\n";
    } else {
      std::cout << Dump(json{{"id", outcome->id}, {"plugin", outcome->plugin}, {"status", outcome->status},
                             {"error", {{"code", outcome->error_code}, {"message", outcome->error_message}}}})
                << "\n";
    }
    std::cout.flush();  // a producer reading results as they come sees each now
    progress.Update(done, failed);
  }
  return Finish(progress, reader, bad, done, failed);
}

int Run(int argc, char** argv) {
  CLI::App app{"Sends tasks (JSON lines) to umi hosts and writes their results as JSON lines"};
  SubmitOptions o;
  AddOptions(app, o);
  CLI11_PARSE(app, argc, argv);
  if (!LoadCurveKeys(o)) return 2;
  o.client.retry_after = std::chrono::milliseconds(o.retry_after_ms);
  const auto wait = std::chrono::milliseconds(static_cast<int64_t>(o.wait_s * 1000));
  if (!o.redis_url.empty()) return SubmitToRedis(o, wait);
  if (o.client.rpc.empty() && o.client.tasks.empty()) o.client.rpc = {"tcp://127.0.0.1:5557"};
  if (o.client.rpc.empty() != !o.client.results.empty()) {
    std::cerr << "umi-submit: give --rpc, or both --tasks and --results\n";
    return 2;
  }
  zmq::context_t context;
  std::optional<umi::Client> connected;
  try {
    connected.emplace(context, o.client);
  } catch (const zmq::error_t& error) {
    std::cerr << "umi-submit: cannot use the endpoints given (--rpc " << Joined(o.client.rpc) << ", --tasks "
              << o.client.tasks << ", --results " << o.client.results << "): " << error.what() << "\n";
    return 2;
  }
  return o.op.empty() ? SubmitAll(*connected, o, wait) : SendControl(*connected, o, wait);
}

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& error) {  // never an abort with a core dump
    std::cerr << "\numi-submit: " << error.what() << "\n";
    return 1;
  }
}
