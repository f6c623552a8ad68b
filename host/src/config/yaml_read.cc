#include "config/yaml_read.h"

#include <cmath>
#include <vector>

#include "common/quantity.h"
#include "common/text.h"

namespace umi::yaml_read {

std::string Where(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.line >= 0
             ? " (line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1) + ")"
             : "";
}

void Fail(const YAML::Node& node, const std::string& path, const std::string& what) {
  throw ConfigError(path + ": " + what + Where(node));
}

void RequireMap(const YAML::Node& node, const std::string& path) {
  if (!node.IsMap()) Fail(node, path, "expected a map");
}

void CheckKeys(const YAML::Node& node, const std::string& path, const std::set<std::string>& allowed) {
  RequireMap(node, path);
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    if (allowed.count(key)) continue;
    std::string known;
    for (const auto& name : allowed) known += (known.empty() ? "" : ", ") + name;
    const std::string closest = ClosestMatch(key, std::vector<std::string>(allowed.begin(), allowed.end()));
    Fail(entry.first, path.empty() ? key : path + "." + key,
         "unknown key" + (closest.empty() ? "" : ", did you mean '" + closest + "'?") +
             " (expected one of: " + known + ")");
  }
}

double ReadNumber(const YAML::Node& node, const std::string& path, double min_value, double max_value) {
  const double value = Read<double>(node, path, "a number");
  if (!std::isfinite(value) || value < min_value || value > max_value) {
    Fail(node, path, "must be a number " + Quantity::FromDouble(min_value).ToString() + ".." +
                         Quantity::FromDouble(max_value).ToString() + ", got " + node.Scalar());
  }
  return value;
}

double ReadPositive(const YAML::Node& node, const std::string& path, double max_value) {
  const double value = Read<double>(node, path, "a number");
  if (!std::isfinite(value) || value <= 0 || value > max_value) {
    Fail(node, path, "must be a number > 0 and at most " + Quantity::FromDouble(max_value).ToString() + ", got " +
                         node.Scalar());
  }
  return value;
}

int64_t ReadInteger(const YAML::Node& node, const std::string& path, int64_t min_value, int64_t max_value) {
  if (!node.IsScalar()) Fail(node, path, "expected an integer");
  int64_t value = 0;
  try {
    value = node.as<int64_t>();
  } catch (const YAML::BadConversion&) {
    bool is_integer = false;
    try {  // a whole number too large for int64 is out of range, not mistyped
      const double number = node.as<double>();
      is_integer = std::isfinite(number) && number == std::floor(number);
    } catch (const YAML::BadConversion&) {
    }
    Fail(node, path, is_integer ? "must be " + std::to_string(min_value) + ".." + std::to_string(max_value) +
                                      ", got " + node.Scalar()
                                : "expected an integer, got '" + node.Scalar() + "'");
  }
  if (value < min_value || value > max_value) {
    Fail(node, path, "must be " + std::to_string(min_value) + ".." + std::to_string(max_value) + ", got " +
                         std::to_string(value));
  }
  return value;
}

int ReadInt(const YAML::Node& node, const std::string& path, int min_value, int max_value) {
  return static_cast<int>(ReadInteger(node, path, min_value, max_value));
}

double ReadAmount(const YAML::Node& node, const std::string& path, double max_value) {
  const double value = Read<double>(node, path, "a number");
  if (!std::isfinite(value) || value < 0 || value > max_value) {
    Fail(node, path, "must be a number 0.." + Quantity::FromDouble(max_value).ToString() + ", got " + node.Scalar());
  }
  if (value > 0 && Quantity::FromDouble(value) == Quantity()) {
    Fail(node, path, "is below the smallest unit (0.0001), got " + node.Scalar());
  }
  return value;
}

}  // namespace umi::yaml_read
