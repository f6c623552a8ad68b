#include "common/quantity.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

TEST(Quantity, DecimalFractionsAddExactly) {
  EXPECT_EQ(Quantity::FromDouble(0.1) + Quantity::FromDouble(0.2), Quantity::FromDouble(0.3));
  Quantity total;
  for (int i = 0; i < 10; ++i) total += Quantity::FromDouble(0.1);
  EXPECT_EQ(total, Quantity::Whole(1));
}

TEST(Quantity, ManyAllocateReleaseCyclesDoNotDrift) {
  Quantity used;
  for (int i = 0; i < 1000000; ++i) {
    used += Quantity::FromDouble(0.3333);
    used -= Quantity::FromDouble(0.3333);
  }
  EXPECT_EQ(used, Quantity());
}

TEST(Quantity, PrintsShortestDecimal) {
  EXPECT_EQ(Quantity::Whole(2).ToString(), "2");
  EXPECT_EQ(Quantity::FromDouble(0.25).ToString(), "0.25");
  EXPECT_EQ(Quantity::FromDouble(1.0001).ToString(), "1.0001");
  EXPECT_EQ((Quantity() - Quantity::FromDouble(1.5)).ToString(), "-1.5");
}

TEST(Quantity, WholeAndCeil) {
  EXPECT_TRUE(Quantity::Whole(3).IsWhole());
  EXPECT_FALSE(Quantity::FromDouble(0.5).IsWhole());
  EXPECT_EQ(Quantity::FromDouble(1.5).CeilWholes(), 2);
  EXPECT_EQ(Quantity::FromDouble(0.0001).CeilWholes(), 1);
  EXPECT_EQ(Quantity::Whole(2).CeilWholes(), 2);
}

}  // namespace
}  // namespace umi
