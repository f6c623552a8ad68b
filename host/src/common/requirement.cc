#include "common/requirement.h"

namespace umi {

Status ResourceRequirement::Validate() const {
  auto bad = [](std::string why) { return Status(ErrorCode::kBadRequest, std::move(why)); };
  if (cpu_cores < Quantity()) return bad("cpu_cores must not be negative");
  if (cpu_threads < 0) return bad("cpu_threads must not be negative");
  if (memory_mb < 0) return bad("memory_mb must not be negative");
  if (gpu_count < Quantity()) return bad("gpu_count must not be negative");
  if (gpu_count > Quantity::Whole(1) && !gpu_count.IsWhole()) {
    return bad("gpu_count above 1 must be a whole number, got " + gpu_count.ToString());
  }
  return {};
}

std::string ResourceRequirement::ToString() const {
  std::string text = "cpu_cores=" + cpu_cores.ToString() +
                     " cpu_threads=" + std::to_string(cpu_threads) +
                     " memory_mb=" + std::to_string(memory_mb);
  if (uses_gpu()) {
    text += " gpu_count=" + gpu_count.ToString() + (exclusive_gpu ? " (exclusive)" : " (shared)");
  }
  return text;
}

void RequirementOverride::ApplyTo(ResourceRequirement& requirement) const {
  if (cpu_cores) requirement.cpu_cores = Quantity::FromDouble(*cpu_cores);
  if (cpu_threads) requirement.cpu_threads = *cpu_threads;
  if (gpu_count) requirement.gpu_count = Quantity::FromDouble(*gpu_count);
  if (memory_mb) requirement.memory_mb = *memory_mb;
  if (exclusive_gpu) requirement.exclusive_gpu = *exclusive_gpu;
}

}  // namespace umi
