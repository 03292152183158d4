// zarr v3 sharding (sharding_indexed): each file holds a shard of inner chunks and an index of
// (offset, nbytes) per inner chunk, at the end or the start, usually followed by a crc32c.
// ShardReader opens the byte range of one inner chunk as a ChunkFile, so the rest of the data
// path (partial Blosc reads, windowed reads of raw bytes, codec chains) is the same as for
// unsharded chunks. Parsed indexes are cached per array (bounded), keyed by shard and checked
// against the file's identity so a rewritten shard is never read through a stale index.
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
#include "chunk_source.hpp"
#include "fork_local.hpp"

namespace zarrcrop {

struct ShardIndex {
    std::vector<uint64_t> entries;  // (offset, nbytes) per inner chunk, C order
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
};

// Reads and validates the index of an open shard file: checksum, every range inside the data
// part of the file, no two ranges overlapping, none larger than max_chunk_bytes. Throws
// ChunkError saying what is wrong.
std::shared_ptr<const ShardIndex> read_shard_index(int fd, const struct stat& st,
                                                   std::size_t n_inner, bool at_start, bool crc,
                                                   std::size_t max_chunk_bytes);

class ShardReader {
public:
    ShardReader(const ArraySpec& spec, const FileChunkSource& files);
    ~ShardReader();
    ShardReader(const ShardReader&) = delete;
    ShardReader& operator=(const ShardReader&) = delete;

    // "c/0/1 (inner chunk (2, 3))": names the shard key in messages.
    std::string label(const int64_t* coords) const;
    // The inner chunk at grid coordinates `coords`; a closed ChunkFile when the shard file is
    // missing or the inner chunk is empty (both read as the fill value).
    ChunkFile open(const int64_t* coords, std::size_t max_bytes) const;

private:
    std::shared_ptr<const ShardIndex> index_for(const std::string& key, int fd,
                                                const struct stat& st,
                                                std::size_t max_bytes) const;

    const ArraySpec& spec_;
    const FileChunkSource& files_;
    std::vector<int64_t> per_shard_;  // inner chunks per shard, per dimension
    std::size_t n_inner_ = 1;

    // Bounded LRU of parsed indexes. Replaced, not locked, in a forked child.
    struct Cache {
        std::mutex mutex;
        std::list<std::pair<std::string, std::shared_ptr<const ShardIndex>>> lru;
        std::unordered_map<std::string, decltype(lru)::iterator> index;
    };
    Cache& cache() const { return cache_.get(); }
    mutable ForkLocal<Cache> cache_;
    static constexpr std::size_t kMaxCachedIndexes = 256;
};

}  // namespace zarrcrop
