// An optional LRU cache of decoded chunks, bounded in bytes, for workloads that revisit chunks.
// Off (capacity 0) by default. Fork-safe: a child process starts with an empty cache instead of
// touching a mutex that a parent thread may have held at fork time.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/fork_local.hpp"

namespace zarrcrop {

using ChunkBytes = std::shared_ptr<const std::vector<uint8_t>>;

struct CacheStats {
    std::size_t capacity = 0;
    std::size_t size = 0;  // bytes held
    std::size_t entries = 0;
    std::size_t hits = 0;
    std::size_t misses = 0;
};

class ChunkCache {
public:
    explicit ChunkCache(std::size_t capacity_bytes);
    ~ChunkCache();
    ChunkCache(const ChunkCache&) = delete;
    ChunkCache& operator=(const ChunkCache&) = delete;

    bool enabled() const { return capacity_ > 0; }
    ChunkBytes get(const std::string& key);
    // Inserts (or refreshes) an entry, evicting least recently used ones to stay in capacity.
    // Values larger than the capacity are not cached.
    void put(const std::string& key, ChunkBytes value);
    void clear();
    CacheStats stats();

private:
    struct State {
        std::mutex mutex;
        std::list<std::pair<std::string, ChunkBytes>> lru;  // front = most recent
        std::unordered_map<std::string, std::list<std::pair<std::string, ChunkBytes>>::iterator>
            index;
        std::size_t size = 0;
        std::size_t hits = 0;
        std::size_t misses = 0;
    };
    State& state() { return state_.get(); }

    const std::size_t capacity_;
    ForkLocal<State> state_;
};

}  // namespace zarrcrop
