// StatusOr<T>: a value, or the Status (status.h) saying why there is none.
//
// Used for expected failures (a bad config file, a refused plugin) so that
// callers decide what to do; exceptions stay at the program's edges.
//
// Thread safety: a value type.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

#include "common/status.h"

namespace umi {

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  // Why there is no value (the status's message).
  const std::string& error() const { return status_.message(); }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace umi
