#include "host/result_cache.h"

namespace umi {

void ResultCache::Remember(const std::string& id, std::string body, uint64_t fingerprint, Clock::time_point now) {
  if (max_entries_ == 0 || window_ <= Clock::duration::zero()) return;
  entries_[id] = Entry{std::move(body), now, fingerprint};
  order_.emplace_back(now, id);
  Expire(now);
}

const ResultCache::Entry* ResultCache::Find(const std::string& id, Clock::time_point now) {
  Expire(now);
  const auto found = entries_.find(id);
  return found == entries_.end() ? nullptr : &found->second;
}

void ResultCache::Expire(Clock::time_point now) {
  while (!order_.empty() && (now - order_.front().first > window_ || order_.size() > max_entries_)) {
    const auto& [at, id] = order_.front();
    // An id remembered again later has a newer entry: leave that one.
    if (const auto entry = entries_.find(id); entry != entries_.end() && entry->second.at == at) entries_.erase(entry);
    order_.pop_front();
  }
}

}  // namespace umi
