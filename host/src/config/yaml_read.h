// Typed, bounded reads of YAML values for the config parser
// (hardware_config.cc): each either returns a value in range or throws
// ConfigError with a message that names the key's path, what was expected,
// what was found, and the line and column ("scheduler.max_queued: must be
// 1..10000000, got 0 (line 12, column 16)").
//
// Thread safety: stateless functions.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>

namespace umi::yaml_read {

// The first error found, carried out of nested readers to the parser's edge.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// " (line L, column C)", or nothing for a node without a position.
std::string Where(const YAML::Node& node);

[[noreturn]] void Fail(const YAML::Node& node, const std::string& path, const std::string& what);

void RequireMap(const YAML::Node& node, const std::string& path);

// A map whose keys are all in `allowed`; an unknown key is named with the
// closest allowed one.
void CheckKeys(const YAML::Node& node, const std::string& path, const std::set<std::string>& allowed);

// A scalar as T; `type_name` says what was expected ("a number").
template <typename T>
T Read(const YAML::Node& node, const std::string& path, const char* type_name) {
  if (!node.IsScalar()) Fail(node, path, std::string("expected ") + type_name);
  try {
    return node.as<T>();
  } catch (const YAML::BadConversion&) {
    Fail(node, path, std::string("expected ") + type_name + ", got '" + node.Scalar() + "'");
  }
}

// A finite number in [min_value, max_value].
double ReadNumber(const YAML::Node& node, const std::string& path, double min_value, double max_value);
// A finite number in (0, max_value].
double ReadPositive(const YAML::Node& node, const std::string& path, double max_value);
// An integer in [min_value, max_value]: checked before any narrowing, so
// 4294967297 is an error, never 1.
int64_t ReadInteger(const YAML::Node& node, const std::string& path, int64_t min_value, int64_t max_value);
int ReadInt(const YAML::Node& node, const std::string& path, int min_value, int max_value);
// A resource amount (cores, GPUs): finite, in [0, max_value], and not a
// positive value below the pool's unit (it would round to nothing).
double ReadAmount(const YAML::Node& node, const std::string& path, double max_value);

// Calls sink(node) when `parent` has `key`.
template <typename Sink>
void IfPresent(const YAML::Node& parent, const char* key, Sink sink) {
  if (const YAML::Node node = parent[key]) sink(node);
}

}  // namespace umi::yaml_read
