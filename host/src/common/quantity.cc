#include "common/quantity.h"

#include <cstdlib>

namespace umi {

std::string Quantity::ToString() const {
  const int64_t magnitude = std::llabs(units_);
  std::string text = std::to_string(magnitude / kUnitsPerWhole);
  int64_t fraction = magnitude % kUnitsPerWhole;
  if (fraction != 0) {
    std::string digits = std::to_string(fraction + kUnitsPerWhole).substr(1);  // zero-padded
    digits.erase(digits.find_last_not_of('0') + 1);
    text += "." + digits;
  }
  return units_ < 0 ? "-" + text : text;
}

}  // namespace umi
