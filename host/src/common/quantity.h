// Quantity: an exact, non-floating resource amount in 1/10000 units.
//
// Fractional cores and GPUs are stored as int64 ten-thousandths so that
// 0.1 + 0.2 == 0.3 holds and a pool never drifts after a million
// allocate/release pairs (the approach of Ray's fixed_point.h). Values are
// rounded to the nearest unit on construction from a double.
//
// Thread safety: a value type; safe to copy across threads.
#pragma once

#include <cmath>
#include <compare>
#include <cstdint>
#include <string>

namespace umi {

class Quantity {
 public:
  static constexpr int64_t kUnitsPerWhole = 10000;

  constexpr Quantity() = default;
  static Quantity FromDouble(double value) {
    return Quantity(std::llround(value * static_cast<double>(kUnitsPerWhole)));
  }
  static constexpr Quantity FromUnits(int64_t units) { return Quantity(units); }
  static constexpr Quantity Whole(int64_t wholes) { return Quantity(wholes * kUnitsPerWhole); }

  constexpr int64_t units() const { return units_; }
  double ToDouble() const { return static_cast<double>(units_) / kUnitsPerWhole; }
  constexpr bool IsWhole() const { return units_ % kUnitsPerWhole == 0; }
  // Whole units needed to hold this amount (1.5 -> 2).
  constexpr int64_t CeilWholes() const { return (units_ + kUnitsPerWhole - 1) / kUnitsPerWhole; }
  // Shortest decimal form: "2", "0.25".
  std::string ToString() const;

  constexpr Quantity& operator+=(Quantity other) {
    units_ += other.units_;
    return *this;
  }
  constexpr Quantity& operator-=(Quantity other) {
    units_ -= other.units_;
    return *this;
  }
  friend constexpr Quantity operator+(Quantity a, Quantity b) { return a += b; }
  friend constexpr Quantity operator-(Quantity a, Quantity b) { return a -= b; }
  friend constexpr auto operator<=>(Quantity, Quantity) = default;

 private:
  constexpr explicit Quantity(int64_t units) : units_(units) {}
  int64_t units_ = 0;
};

}  // namespace umi
