// StatusOr<T>: a value or a human-readable reason why there is none.
//
// Used for expected failures (a bad config file, a refused plugin) so that
// callers decide what to do; exceptions stay at the program's edges.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace umi {

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  static StatusOr Error(std::string reason) {
    StatusOr result;
    result.error_ = std::move(reason);
    return result;
  }

  bool ok() const { return value_.has_value(); }
  const std::string& error() const { return error_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  StatusOr() = default;
  std::optional<T> value_;
  std::string error_;
};

}  // namespace umi
