// zarr v3 sharding (sharding_indexed): each file holds a shard of inner chunks and an index of
// (offset, nbytes) per inner chunk, at the end or the start, usually followed by a crc32c.
// ShardReader opens the byte range of one inner chunk as a ChunkFile, so the rest of the data
// path (partial Blosc reads, windowed reads of raw bytes, codec chains) is the same as for
// unsharded chunks. Parsed indexes are cached process-wide within a byte limit
// (set_limit), keyed by shard file and layout and checked against the file's identity, so a
// rewritten shard is never read through a stale index.
#pragma once

#include <sys/stat.h>
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

#include "array_spec.hpp"
#include "io/chunk_source.hpp"
#include "runtime/fork_local.hpp"

namespace zarrcrop {

struct ShardIndex {
    std::vector<uint64_t> entries;  // (offset, nbytes) per inner chunk, C order
    std::vector<uint8_t> header;    // or, for a remote Blosc chunk: its header and offsets
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    std::string version;  // a remote shard's version (ETag) when its index was read
};

// Reads and validates the index of an open shard file: checksum, every range inside the data
// part of the file, no two ranges overlapping, none larger than max_chunk_bytes. Throws
// ChunkError saying what is wrong.
std::shared_ptr<const ShardIndex> read_shard_index(int fd, const struct stat& st,
                                                   std::size_t n_inner, bool at_start, bool crc,
                                                   std::size_t max_chunk_bytes);
// An index of `n_inner` entries whose raw bytes (shard_index_bytes of them) are to be read to
// *raw; then parse_shard_index decodes and checks them in place, for a shard of `size` bytes.
std::shared_ptr<ShardIndex> new_shard_index(std::size_t n_inner, bool crc, uint8_t** raw);
void parse_shard_index(ShardIndex& index, uint64_t size, std::size_t n_inner, bool at_start,
                       bool crc, std::size_t max_chunk_bytes);
// Bytes of the index of a shard of `n_inner` inner chunks.
uint64_t shard_index_bytes(std::size_t n_inner, bool crc);

struct IndexCacheStats {
    std::size_t limit = 0;  // bytes
    std::size_t size = 0;   // bytes held
    std::size_t entries = 0;
    std::size_t hits = 0;
    std::size_t misses = 0;
};

// The process-wide LRU of parsed shard indexes, bounded in bytes (an index larger than the
// limit is read for each use and not kept).
class ShardIndexCache {
public:
    explicit ShardIndexCache(std::size_t limit_bytes) : limit_(limit_bytes) {}
    ShardIndexCache(const ShardIndexCache&) = delete;
    ShardIndexCache& operator=(const ShardIndexCache&) = delete;

    // The cached index for `key` if it matches the file's identity `st`.
    std::shared_ptr<const ShardIndex> get(const std::string& key, const struct stat& st);
    // The cached index of a remote shard (its version is checked by every read of the shard).
    std::shared_ptr<const ShardIndex> get_remote(const std::string& key);
    // Forgets `key` (a remote shard that changed), or every key starting with `prefix`.
    void erase(const std::string& key);
    void erase_prefix(const std::string& prefix);
    void put(const std::string& key, std::shared_ptr<const ShardIndex> index);
    void set_limit(std::size_t bytes);
    std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
    void clear();
    IndexCacheStats stats();

private:
    struct State {
        std::mutex mutex;
        std::list<std::pair<std::string, std::shared_ptr<const ShardIndex>>> lru;
        std::unordered_map<std::string, decltype(lru)::iterator> index;
        std::size_t size = 0;
        std::size_t hits = 0;
        std::size_t misses = 0;
    };
    static std::size_t cost(const std::string& key, const ShardIndex& index);
    static void evict_to(State& s, std::size_t limit);

    std::atomic<std::size_t> limit_;
    ForkLocal<State> state_;  // replaced, not locked, in a forked child
};

// 32 MiB: thousands of typical shards (a (1, 3, 2160, 3840) shard of 960x960 inner chunks
// has a 204-byte index), or about 100,000 remote chunk headers of 11 blocks.
constexpr std::size_t kDefaultIndexCacheLimit = std::size_t{32} << 20;
ShardIndexCache& process_shard_indexes();

class ShardReader {
public:
    // Shards are files of `files`, or, with `store`, objects of that remote store.
    ShardReader(const ArraySpec& spec, const FileChunkSource& files,
                std::shared_ptr<const ObjectSource> store = nullptr);
    ~ShardReader();
    ShardReader(const ShardReader&) = delete;
    ShardReader& operator=(const ShardReader&) = delete;

    // "c/0/1 (inner chunk (2, 3))": names the shard key in messages.
    std::string label(const int64_t* coords) const;
    // The inner chunk at grid coordinates `coords`; a closed ChunkFile when the shard file is
    // missing or the inner chunk is empty (both read as the fill value).
    ChunkFile open(const int64_t* coords, std::size_t max_bytes) const;
    // Forgets the kept index of the remote shard at `url` (it changed: the next read reads it
    // again); `max_bytes` as given to open.
    void forget(const std::string& url, std::size_t max_bytes) const;

private:
    std::shared_ptr<const ShardIndex> index_for(const std::string& path, int fd,
                                                const struct stat& st, std::size_t max_bytes) const;
    // A remote shard's index (kept, or fetched: a range at its end or start); null when the
    // shard object does not exist.
    std::shared_ptr<const ShardIndex> remote_index_for(const std::string& key,
                                                       std::size_t max_bytes) const;
    // The cache key of the shard at `path`: the layout is part of it (two readers may see one
    // file with different metadata).
    std::string cache_key(const std::string& path, std::size_t max_bytes) const;

    const ArraySpec& spec_;
    const FileChunkSource& files_;
    std::shared_ptr<const ObjectSource> store_;
    std::vector<int64_t> per_shard_;  // inner chunks per shard, per dimension
    std::size_t n_inner_ = 1;
};

}  // namespace zarrcrop
