#include "decode/chunk_cache.hpp"

#include <unistd.h>

namespace zarrcrop {

ChunkCache::ChunkCache(std::size_t capacity_bytes) : capacity_(capacity_bytes) {}

ChunkCache::~ChunkCache() = default;

ChunkBytes ChunkCache::get(const std::string& key) {
    if (!enabled()) return nullptr;
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.index.find(key);
    if (it == s.index.end()) {
        ++s.misses;
        return nullptr;
    }
    ++s.hits;
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return it->second->second;
}

void ChunkCache::put(const std::string& key, ChunkBytes value) {
    if (!enabled() || !value || value->size() > capacity_) return;
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.index.find(key);
    if (it != s.index.end()) {
        s.size -= it->second->second->size();
        s.lru.erase(it->second);
        s.index.erase(it);
    }
    s.lru.emplace_front(key, std::move(value));
    s.index[key] = s.lru.begin();
    s.size += s.lru.front().second->size();
    while (s.size > capacity_ && !s.lru.empty()) {
        auto& last = s.lru.back();
        s.size -= last.second->size();
        s.index.erase(last.first);
        s.lru.pop_back();
    }
}

void ChunkCache::clear() {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.lru.clear();
    s.index.clear();
    s.size = 0;
}

CacheStats ChunkCache::stats() {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return CacheStats{capacity_, s.size, s.lru.size(), s.hits, s.misses};
}

}  // namespace zarrcrop
