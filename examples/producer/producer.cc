// producer: sends the seed's two benchmark workloads to a running umi-host
// and prints what happened to each task, then serial time vs makespan.
//
//   producer --tasks tcp://127.0.0.1:5555 --results tcp://127.0.0.1:5556
//
// Workload "cpu": seven sleep tasks (4.0 .. 1.2 s; 18 s serial).
// Workload "mixed": three 1.5 s gpu_sleep tasks plus six sleep tasks
// (3.0 .. 0.4 s; 14 s serial). Exits non-zero if any task did not succeed.
#include <CLI/CLI.hpp>
#include <msgpack.hpp>
#include <zmq.hpp>

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <map>
#include <string>
#include <vector>

namespace {

struct Job {
  std::string id;
  std::string plugin;
  int ms;
};

struct Row {
  std::string id, plugin, status, error;
  double queued_ms = 0, run_ms = 0, started_at = 0, finished_at = 0;
  int threads = 0;
  std::vector<int> gpu_ids;
};

std::string PackTask(const Job& job) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(4);
  packer.pack("v").pack(1);
  packer.pack("id").pack(job.id);
  packer.pack("plugin").pack(job.plugin);
  packer.pack("input").pack_map(1).pack("ms").pack(job.ms);
  return std::string(buffer.data(), buffer.size());
}

Row ParseResult(const zmq::message_t& message) {
  const msgpack::object_handle handle =
      msgpack::unpack(static_cast<const char*>(message.data()), message.size());
  const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
  auto get = [&](const char* key) { return fields.count(key) ? &fields.at(key) : nullptr; };
  Row row;
  if (auto* v = get("id")) row.id = v->as<std::string>();
  if (auto* v = get("plugin")) row.plugin = v->as<std::string>();
  if (auto* v = get("status")) row.status = v->as<std::string>();
  if (auto* v = get("error")) row.error = v->as<std::map<std::string, std::string>>()["message"];
  if (auto* v = get("queued_ms")) row.queued_ms = v->as<double>();
  if (auto* v = get("run_ms")) row.run_ms = v->as<double>();
  if (auto* v = get("started_at")) row.started_at = v->as<double>();
  if (auto* v = get("finished_at")) row.finished_at = v->as<double>();
  if (auto* v = get("allocation")) {
    const auto allocation = v->as<std::map<std::string, msgpack::object>>();
    row.threads = allocation.at("cpu_threads").as<int>();
    row.gpu_ids = allocation.at("gpu_ids").as<std::vector<int>>();
  }
  return row;
}

std::string Gpus(const std::vector<int>& ids) {
  if (ids.empty()) return "-";
  std::string text;
  for (int id : ids) text += (text.empty() ? "" : ",") + std::to_string(id);
  return text;
}

// An SVG timeline: one lane per task, CPU tasks blue, GPU tasks orange,
// workloads one under the other, x in seconds from each workload's start.
void WriteTimeline(const std::string& path, const std::vector<std::pair<std::string, std::vector<Row>>>& workloads) {
  const double scale = 120;  // pixels per second
  const int lane = 18, label = 110, top = 30;
  std::ostringstream body;
  double widest = 0;
  int y = top;
  for (const auto& [name, rows] : workloads) {
    double start = 1e300;
    for (const Row& row : rows) start = std::min(start, row.started_at);
    body << "<text x=\"4\" y=\"" << y + 12 << "\" font-weight=\"bold\">workload " << name << "</text>\n";
    y += lane;
    for (const Row& row : rows) {
      const double x0 = (row.started_at - start) * scale, width = (row.finished_at - row.started_at) * scale;
      widest = std::max(widest, x0 + width);
      body << "<text x=\"4\" y=\"" << y + 12 << "\">" << row.id << "</text>"
           << "<rect class=\"task\" x=\"" << label + x0 << "\" y=\"" << y + 2 << "\" width=\"" << std::max(width, 1.0)
           << "\" height=\"" << lane - 4 << "\" fill=\"" << (row.gpu_ids.empty() ? "#4a7fc1" : "#e8892b")
           << "\"><title>" << row.id << " " << row.plugin << " " << row.run_ms << " ms</title></rect>\n";
      y += lane;
    }
    y += lane / 2;
  }
  std::ofstream out(path);
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"11\" width=\""
      << label + widest + 20 << "\" height=\"" << y + 10 << "\">\n"
      << "<text x=\"4\" y=\"16\">umi demo: CPU tasks (blue) run side by side; GPU tasks (orange) take turns</text>\n";
  for (int second = 0; second * scale <= widest; ++second) {
    out << "<line x1=\"" << label + second * scale << "\" y1=\"" << top << "\" x2=\"" << label + second * scale
        << "\" y2=\"" << y << "\" stroke=\"#ddd\"/><text x=\"" << label + second * scale + 2 << "\" y=\"" << top - 2
        << "\" fill=\"#888\">" << second << " s</text>\n";
  }
  out << body.str() << "</svg>\n";
}

// Runs one workload; returns false if any task failed. Fills `rows`.
bool RunWorkload(const std::string& name, const std::vector<Job>& jobs, zmq::socket_t& tasks,
                 zmq::socket_t& results, std::chrono::seconds timeout, std::vector<Row>& rows) {
  double serial_s = 0;
  for (const Job& job : jobs) serial_s += job.ms / 1000.0;
  const auto start = std::chrono::steady_clock::now();
  for (const Job& job : jobs) tasks.send(zmq::buffer(PackTask(job)));

  rows.clear();
  while (rows.size() < jobs.size()) {
    zmq::pollitem_t item{results.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(timeout)) == 0) {
      std::fprintf(stderr, "producer: no result within %llds; is umi-host running?\n",
                   static_cast<long long>(timeout.count()));
      return false;
    }
    zmq::message_t message;
    (void)results.recv(message);
    rows.push_back(ParseResult(message));
  }
  const double makespan_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("\nworkload %s: %zu tasks\n", name.c_str(), jobs.size());
  std::printf("%-10s %-10s %-9s %10s %10s %8s %5s\n", "id", "plugin", "status", "queued_ms",
              "run_ms", "threads", "gpu");
  bool all_ok = true;
  for (const Row& row : rows) {
    std::printf("%-10s %-10s %-9s %10.1f %10.1f %8d %5s\n", row.id.c_str(), row.plugin.c_str(),
                row.status.c_str(), row.queued_ms, row.run_ms, row.threads, Gpus(row.gpu_ids).c_str());
    if (row.status != "ok") {
      all_ok = false;
      std::printf("           error: %s\n", row.error.c_str());
    }
  }
  std::printf("serial %.2f s, makespan %.2f s, speedup %.2fx\n", serial_s, makespan_s,
              serial_s / makespan_s);
  return all_ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sends the seed's CPU-only and mixed CPU+GPU workloads to umi-host"};
  std::string tasks_endpoint = "tcp://127.0.0.1:5555";
  std::string results_endpoint = "tcp://127.0.0.1:5556";
  int timeout_s = 60;
  double time_scale = 1.0;
  std::string timeline;
  app.add_option("--tasks", tasks_endpoint, "umi-host tasks endpoint")->capture_default_str();
  app.add_option("--results", results_endpoint, "umi-host results endpoint")->capture_default_str();
  app.add_option("--timeout", timeout_s, "Seconds to wait for each result")->capture_default_str();
  app.add_option("--time-scale", time_scale, "Multiply every task's duration (tests use 0.02)")
      ->check(CLI::Range(0.001, 100.0))
      ->capture_default_str();
  app.add_option("--timeline", timeline, "Write an SVG timeline of both workloads here");
  CLI11_PARSE(app, argc, argv);

  zmq::context_t context;
  zmq::socket_t tasks(context, zmq::socket_type::push);
  zmq::socket_t results(context, zmq::socket_type::pull);
  tasks.set(zmq::sockopt::linger, 0);
  tasks.connect(tasks_endpoint);
  results.connect(results_endpoint);

  std::vector<Job> cpu = {{"cpu-1", "sleep", 4000}, {"cpu-2", "sleep", 3500},
                                {"cpu-3", "sleep", 3000}, {"cpu-4", "sleep", 2500},
                                {"cpu-5", "sleep", 2000}, {"cpu-6", "sleep", 1800},
                                {"cpu-7", "sleep", 1200}};
  std::vector<Job> mixed = {{"gpu-1", "gpu_sleep", 1500}, {"gpu-2", "gpu_sleep", 1500},
                                  {"gpu-3", "gpu_sleep", 1500}, {"mix-1", "sleep", 3000},
                                  {"mix-2", "sleep", 2500},     {"mix-3", "sleep", 2000},
                                  {"mix-4", "sleep", 1000},     {"mix-5", "sleep", 600},
                                  {"mix-6", "sleep", 400}};
  for (auto* jobs : {&cpu, &mixed}) {
    for (Job& job : *jobs) job.ms = std::max(1, static_cast<int>(job.ms * time_scale));
  }
  const std::chrono::seconds timeout(timeout_s);
  std::vector<Row> cpu_rows, mixed_rows;
  const bool cpu_ok = RunWorkload("cpu", cpu, tasks, results, timeout, cpu_rows);
  const bool mixed_ok = RunWorkload("mixed", mixed, tasks, results, timeout, mixed_rows);
  if (!timeline.empty()) {
    WriteTimeline(timeline, {{"cpu", cpu_rows}, {"mixed", mixed_rows}});
    std::printf("\ntimeline: %s\n", timeline.c_str());
  }
  return cpu_ok && mixed_ok ? 0 : 1;
}
