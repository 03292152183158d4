#include "shard_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "codecs.hpp"
#include "errors.hpp"

namespace zarrcrop {

namespace {

constexpr uint64_t kEmpty = std::numeric_limits<uint64_t>::max();

uint64_t read_u64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

int64_t mtime_ns(const struct stat& st) {
    return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

[[noreturn]] void bad(const std::string& why) { throw ChunkError("malformed shard index: " + why); }

}  // namespace

std::shared_ptr<const ShardIndex> read_shard_index(int fd, const struct stat& st,
                                                   std::size_t n_inner, bool at_start, bool crc,
                                                   std::size_t max_chunk_bytes) {
    const auto size = static_cast<uint64_t>(st.st_size);
    const uint64_t index_bytes = 16 * static_cast<uint64_t>(n_inner) + (crc ? 4 : 0);
    if (size < index_bytes)
        bad("the shard file has " + std::to_string(size) + " bytes, fewer than its " +
            std::to_string(index_bytes) + "-byte index");
    std::vector<uint8_t> raw(index_bytes);
    const uint64_t pos = at_start ? 0 : size - index_bytes;
    std::size_t done = 0;
    while (done < raw.size()) {
        const ssize_t n = ::pread(fd, raw.data() + done, raw.size() - done,
                                  static_cast<off_t>(pos + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw ChunkIoError(std::string("cannot read shard index: ") + std::strerror(errno), errno);
        if (n == 0) bad("the shard file shrank while its index was read");
        done += static_cast<std::size_t>(n);
    }
    if (crc) {
        try {
            check_crc32c(raw.data(), raw.size());
        } catch (const ChunkError& e) {
            bad(e.what());
        }
    }
    auto index = std::make_shared<ShardIndex>();
    index->entries.resize(2 * n_inner);
    const uint64_t lo = at_start ? index_bytes : 0;
    const uint64_t hi = at_start ? size : size - index_bytes;
    std::vector<std::pair<uint64_t, std::size_t>> used;  // (offset, inner chunk)
    for (std::size_t i = 0; i < n_inner; ++i) {
        const uint64_t offset = read_u64(raw.data() + 16 * i);
        const uint64_t nbytes = read_u64(raw.data() + 16 * i + 8);
        index->entries[2 * i] = offset;
        index->entries[2 * i + 1] = nbytes;
        if (offset == kEmpty && nbytes == kEmpty) continue;
        if (offset == kEmpty || nbytes == kEmpty)
            bad("inner chunk " + std::to_string(i) + " has a half-empty entry");
        if (nbytes > max_chunk_bytes)
            bad("inner chunk " + std::to_string(i) + " claims " + std::to_string(nbytes) +
                " bytes, more than an inner chunk can have");
        if (offset < lo || offset > hi || nbytes > hi - offset)
            bad("inner chunk " + std::to_string(i) + " (offset " + std::to_string(offset) +
                ", " + std::to_string(nbytes) + " bytes) lies outside the shard's data (" +
                std::to_string(size) + "-byte file)");
        if (nbytes > 0) used.emplace_back(offset, i);
    }
    std::sort(used.begin(), used.end());
    for (std::size_t k = 1; k < used.size(); ++k) {
        const std::size_t prev = used[k - 1].second;
        if (used[k - 1].first + index->entries[2 * prev + 1] > used[k].first)
            bad("inner chunks " + std::to_string(prev) + " and " + std::to_string(used[k].second) +
                " overlap");
    }
    index->dev = st.st_dev;
    index->ino = st.st_ino;
    index->size = st.st_size;
    index->mtime_ns = mtime_ns(st);
    return index;
}

ShardReader::ShardReader(const ArraySpec& spec, const FileChunkSource& files)
    : spec_(spec), files_(files) {
    for (std::size_t d = 0; d < spec_.ndim(); ++d) {
        per_shard_.push_back(spec_.shard_shape[d] / spec_.chunks[d]);
        n_inner_ *= static_cast<std::size_t>(per_shard_.back());
    }
}

ShardReader::~ShardReader() = default;

std::string ShardReader::label(const int64_t* coords) const {
    const std::size_t ndim = spec_.ndim();
    std::vector<int64_t> shard(ndim);
    std::string inner = "(";
    for (std::size_t d = 0; d < ndim; ++d) {
        shard[d] = coords[d] / per_shard_[d];
        inner += (d ? ", " : "") + std::to_string(coords[d] % per_shard_[d]);
    }
    inner += ndim == 1 ? ",)" : ")";
    return chunk_key(spec_.keys, shard.data(), ndim) + " (inner chunk " + inner + ")";
}

std::shared_ptr<const ShardIndex> ShardReader::index_for(const std::string& key, int fd,
                                                         const struct stat& st,
                                                         std::size_t max_bytes) const {
    Cache& c = cache();
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        auto it = c.index.find(key);
        if (it != c.index.end()) {
            const ShardIndex& idx = *it->second->second;
            if (idx.dev == st.st_dev && idx.ino == st.st_ino && idx.size == st.st_size &&
                idx.mtime_ns == mtime_ns(st)) {
                c.lru.splice(c.lru.begin(), c.lru, it->second);
                return it->second->second;
            }
            c.lru.erase(it->second);  // the shard was rewritten
            c.index.erase(it);
        }
    }
    auto index = read_shard_index(fd, st, n_inner_, spec_.shard_index_at_start,
                                  spec_.shard_index_crc32c, max_bytes);
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.index.find(key) == c.index.end()) {
        c.lru.emplace_front(key, index);
        c.index[key] = c.lru.begin();
        if (c.lru.size() > kMaxCachedIndexes) {
            c.index.erase(c.lru.back().first);
            c.lru.pop_back();
        }
    }
    return index;
}

ChunkFile ShardReader::open(const int64_t* coords, std::size_t max_bytes) const {
    const std::size_t ndim = spec_.ndim();
    std::vector<int64_t> shard(ndim);
    std::size_t inner = 0;
    for (std::size_t d = 0; d < ndim; ++d) {
        shard[d] = coords[d] / per_shard_[d];
        inner = inner * static_cast<std::size_t>(per_shard_[d]) +
                static_cast<std::size_t>(coords[d] % per_shard_[d]);
    }
    const std::string key = chunk_key(spec_.keys, shard.data(), ndim);
    // Any size is possible for a shard; its index bounds each inner chunk instead.
    ChunkFile file = files_.open(key, std::numeric_limits<std::size_t>::max());
    if (!file.is_open()) return file;
    struct stat st {};
    if (::fstat(file.fd(), &st) != 0)
        throw ChunkIoError("cannot stat shard file " + file.path() + ": " + std::strerror(errno),
                           errno);
    const auto index = index_for(key, file.fd(), st, max_bytes);
    const uint64_t offset = index->entries[2 * inner];
    const uint64_t nbytes = index->entries[2 * inner + 1];
    if (offset == kEmpty) return ChunkFile();  // empty inner chunk: fill value
    return file.slice(static_cast<std::size_t>(offset), static_cast<std::size_t>(nbytes));
}

}  // namespace zarrcrop
