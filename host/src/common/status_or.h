// StatusOr<T>: a value, or the Status (status.h) saying why there is none.
//
// Used for expected failures (a bad config file, a refused plugin) so that
// callers decide what to do; exceptions stay at the program's edges. Asking
// an error for its value is a bug: it aborts, printing the status (as
// Abseil's StatusOr does), instead of reading an empty optional.
//
// Thread safety: a value type.
#pragma once

#include <cassert>
#include <cstdio>
#include <cstdlib>
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
  T& value() & {
    CheckValue();
    return *value_;
  }
  const T& value() const& {
    CheckValue();
    return *value_;
  }
  T&& value() && {
    CheckValue();
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckValue() const {
    if (!value_) {
      std::fprintf(stderr, "StatusOr::value() on an error: %s\n", status_.message().c_str());
      std::abort();
    }
  }

  std::optional<T> value_;
  Status status_;
};

}  // namespace umi
