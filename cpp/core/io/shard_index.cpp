#include "io/shard_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "codec/codecs.hpp"
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

[[noreturn]] void bad(const std::string& why) {
    throw ChunkError("malformed shard index: " + why);
}

}  // namespace

uint64_t shard_index_bytes(std::size_t n_inner, bool crc) {
    return 16 * static_cast<uint64_t>(n_inner) + (crc ? 4 : 0);
}

std::shared_ptr<ShardIndex> new_shard_index(std::size_t n_inner, bool crc, uint8_t** raw) {
    auto index = std::make_shared<ShardIndex>();
    // The raw index is read straight into the entries' memory and decoded in place: no
    // second index-sized buffer (an index can be tens of MiB).
    index->entries.resize(2 * n_inner + (crc ? 1 : 0));
    *raw = reinterpret_cast<uint8_t*>(index->entries.data());
    return index;
}

void parse_shard_index(ShardIndex& index, uint64_t size, std::size_t n_inner, bool at_start,
                       bool crc, std::size_t max_chunk_bytes) {
    const uint64_t index_bytes = shard_index_bytes(n_inner, crc);
    if (size < index_bytes)
        bad("the shard has " + std::to_string(size) + " bytes, fewer than its " +
            std::to_string(index_bytes) + "-byte index");
    const auto* raw_bytes = reinterpret_cast<const uint8_t*>(index.entries.data());
    if (crc) {
        try {
            check_crc32c(raw_bytes, index_bytes);
        } catch (const ChunkError& e) {
            bad(e.what());
        }
    }
    index.entries.resize(2 * n_inner);  // drops the checksum word
    const uint64_t lo = at_start ? index_bytes : 0;
    const uint64_t hi = at_start ? size : size - index_bytes;
    std::vector<std::pair<uint64_t, std::size_t>> used;  // (offset, inner chunk)
    for (std::size_t i = 0; i < n_inner; ++i) {
        // In place: entry i's bytes are read before they are written back.
        const uint64_t offset = read_u64(raw_bytes + 16 * i);
        const uint64_t nbytes = read_u64(raw_bytes + 16 * i + 8);
        index.entries[2 * i] = offset;
        index.entries[2 * i + 1] = nbytes;
        if (offset == kEmpty && nbytes == kEmpty) continue;
        if (offset == kEmpty || nbytes == kEmpty)
            bad("inner chunk " + std::to_string(i) + " has a half-empty entry");
        if (nbytes > max_chunk_bytes)
            bad("inner chunk " + std::to_string(i) + " claims " + std::to_string(nbytes) +
                " bytes, more than an inner chunk can have");
        if (offset < lo || offset > hi || nbytes > hi - offset)
            bad("inner chunk " + std::to_string(i) + " (offset " + std::to_string(offset) + ", " +
                std::to_string(nbytes) + " bytes) lies outside the shard's data (" +
                std::to_string(size) + "-byte file)");
        if (nbytes > 0) used.emplace_back(offset, i);
    }
    std::sort(used.begin(), used.end());
    for (std::size_t k = 1; k < used.size(); ++k) {
        const std::size_t prev = used[k - 1].second;
        if (used[k - 1].first + index.entries[2 * prev + 1] > used[k].first)
            bad("inner chunks " + std::to_string(prev) + " and " + std::to_string(used[k].second) +
                " overlap");
    }
}

std::shared_ptr<const ShardIndex> read_shard_index(int fd, const struct stat& st,
                                                   std::size_t n_inner, bool at_start, bool crc,
                                                   std::size_t max_chunk_bytes) {
    const auto size = static_cast<uint64_t>(st.st_size);
    const uint64_t index_bytes = shard_index_bytes(n_inner, crc);
    if (size < index_bytes)
        bad("the shard file has " + std::to_string(size) + " bytes, fewer than its " +
            std::to_string(index_bytes) + "-byte index");
    uint8_t* raw = nullptr;
    auto index = new_shard_index(n_inner, crc, &raw);
    const uint64_t pos = at_start ? 0 : size - index_bytes;
    std::size_t done = 0;
    while (done < index_bytes) {
        const ssize_t n =
            ::pread(fd, raw + done, index_bytes - done, static_cast<off_t>(pos + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            throw ChunkIoError(std::string("cannot read shard index: ") + std::strerror(errno),
                               errno);
        if (n == 0) bad("the shard file shrank while its index was read");
        done += static_cast<std::size_t>(n);
    }
    parse_shard_index(*index, size, n_inner, at_start, crc, max_chunk_bytes);
    index->dev = st.st_dev;
    index->ino = st.st_ino;
    index->size = st.st_size;
    index->mtime_ns = mtime_ns(st);
    return index;
}

ShardReader::ShardReader(const ArraySpec& spec, const FileChunkSource& files,
                         std::shared_ptr<const ObjectSource> store)
    : spec_(spec), files_(files), store_(std::move(store)) {
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

std::size_t ShardIndexCache::cost(const std::string& key, const ShardIndex& index) {
    return sizeof(ShardIndex) + index.entries.capacity() * sizeof(uint64_t) +
           index.header.capacity() + index.version.capacity() + 2 * key.size() + 128;
}

void ShardIndexCache::evict_to(State& s, std::size_t limit) {
    while (!s.lru.empty() && s.size > limit) {
        s.size -= cost(s.lru.back().first, *s.lru.back().second);
        s.index.erase(s.lru.back().first);
        s.lru.pop_back();
    }
}

std::shared_ptr<const ShardIndex> ShardIndexCache::get(const std::string& key,
                                                       const struct stat& st) {
    State& s = state_.get();
    std::shared_ptr<const ShardIndex> stale;  // freed after the lock
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.index.find(key);
    if (it != s.index.end()) {
        const ShardIndex& idx = *it->second->second;
        if (idx.dev == st.st_dev && idx.ino == st.st_ino && idx.size == st.st_size &&
            idx.mtime_ns == mtime_ns(st)) {
            ++s.hits;
            s.lru.splice(s.lru.begin(), s.lru, it->second);
            return it->second->second;
        }
        stale = std::move(it->second->second);  // the shard was rewritten
        s.size -= cost(key, *stale);
        s.lru.erase(it->second);
        s.index.erase(it);
    }
    ++s.misses;
    return nullptr;
}

std::shared_ptr<const ShardIndex> ShardIndexCache::get_remote(const std::string& key) {
    State& s = state_.get();
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

void ShardIndexCache::erase(const std::string& key) {
    State& s = state_.get();
    std::shared_ptr<const ShardIndex> gone;  // freed after the lock
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.index.find(key);
    if (it == s.index.end()) return;
    gone = std::move(it->second->second);
    s.size -= cost(key, *gone);
    s.lru.erase(it->second);
    s.index.erase(it);
}

void ShardIndexCache::erase_prefix(const std::string& prefix) {
    State& s = state_.get();
    std::vector<std::shared_ptr<const ShardIndex>> gone;  // freed after the lock
    std::lock_guard<std::mutex> lock(s.mutex);
    for (auto it = s.lru.begin(); it != s.lru.end();) {
        if (it->first.compare(0, prefix.size(), prefix) == 0) {
            s.size -= cost(it->first, *it->second);
            s.index.erase(it->first);
            gone.push_back(std::move(it->second));
            it = s.lru.erase(it);
        } else {
            ++it;
        }
    }
}

void ShardIndexCache::put(const std::string& key, std::shared_ptr<const ShardIndex> index) {
    const std::size_t bytes = cost(key, *index);
    if (bytes > limit()) return;
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.index.count(key) != 0) return;  // another thread read it meanwhile
    s.lru.emplace_front(key, std::move(index));
    s.index[key] = s.lru.begin();
    s.size += bytes;
    evict_to(s, limit());
}

void ShardIndexCache::set_limit(std::size_t bytes) {
    limit_.store(bytes, std::memory_order_relaxed);
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    evict_to(s, bytes);
}

void ShardIndexCache::clear() {
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.lru.clear();
    s.index.clear();
    s.size = 0;
    s.hits = 0;
    s.misses = 0;
}

IndexCacheStats ShardIndexCache::stats() {
    State& s = state_.get();
    std::lock_guard<std::mutex> lock(s.mutex);
    IndexCacheStats st;
    st.limit = limit();
    st.size = s.size;
    st.entries = s.lru.size();
    st.hits = s.hits;
    st.misses = s.misses;
    return st;
}

ShardIndexCache& process_shard_indexes() {
    static ShardIndexCache* cache =
        new ShardIndexCache(kDefaultIndexCacheLimit);  // never destroyed
    return *cache;
}

std::string ShardReader::cache_key(const std::string& path, std::size_t max_bytes) const {
    return path + '\0' + std::to_string(n_inner_) + (spec_.shard_index_at_start ? "s" : "e") +
           (spec_.shard_index_crc32c ? "c" : "n") + std::to_string(max_bytes);
}

std::shared_ptr<const ShardIndex> ShardReader::index_for(const std::string& path, int fd,
                                                         const struct stat& st,
                                                         std::size_t max_bytes) const {
    const std::string key = cache_key(path, max_bytes);
    ShardIndexCache& cache = process_shard_indexes();
    if (auto hit = cache.get(key, st)) return hit;
    auto index = read_shard_index(fd, st, n_inner_, spec_.shard_index_at_start,
                                  spec_.shard_index_crc32c, max_bytes);
    cache.put(key, index);
    return index;
}

std::shared_ptr<const ShardIndex> ShardReader::remote_index_for(const std::string& key,
                                                                std::size_t max_bytes) const {
    const std::string url = store_->url_of(key);
    const std::string ckey = cache_key(url, max_bytes);
    ShardIndexCache& cache = process_shard_indexes();
    if (auto hit = cache.get_remote(ckey)) return hit;
    const auto want =
        static_cast<std::size_t>(shard_index_bytes(n_inner_, spec_.shard_index_crc32c));
    uint8_t* raw = nullptr;
    auto index = new_shard_index(n_inner_, spec_.shard_index_crc32c, &raw);
    const bool at_start = spec_.shard_index_at_start;
    const ObjectRange got = store_->fetch(key, 0, want, !at_start, raw);
    if (!got.found) return nullptr;
    if (got.bytes != want || (!at_start && got.offset + got.bytes != got.object_size))
        bad("the shard " + url + " has " + std::to_string(got.object_size) +
            " bytes, fewer than its " + std::to_string(want) + "-byte index");
    parse_shard_index(*index, got.object_size, n_inner_, at_start, spec_.shard_index_crc32c,
                      max_bytes);
    index->size = static_cast<off_t>(got.object_size);
    index->version = got.version;
    cache.put(ckey, index);
    return index;
}

void ShardReader::forget(const std::string& url, std::size_t max_bytes) const {
    process_shard_indexes().erase(cache_key(url, max_bytes));
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
    if (store_) {
        const auto index = remote_index_for(key, max_bytes);
        if (!index) return ChunkFile();  // no shard object: fill value
        const uint64_t offset = index->entries[2 * inner];
        const uint64_t nbytes = index->entries[2 * inner + 1];
        if (offset == kEmpty) return ChunkFile();  // empty inner chunk: fill value
        ChunkFile whole(store_, key, static_cast<std::size_t>(index->size), index->version);
        return whole.slice(static_cast<std::size_t>(offset), static_cast<std::size_t>(nbytes));
    }
    // Any size is possible for a shard; its index bounds each inner chunk instead.
    ChunkFile file = files_.open(key, std::numeric_limits<std::size_t>::max());
    if (!file.is_open()) return file;
    struct stat st {};
    if (::fstat(file.fd(), &st) != 0)
        throw ChunkIoError("cannot stat shard file " + file.path() + ": " + std::strerror(errno),
                           errno);
    const auto index = index_for(file.path(), file.fd(), st, max_bytes);
    const uint64_t offset = index->entries[2 * inner];
    const uint64_t nbytes = index->entries[2 * inner + 1];
    if (offset == kEmpty) return ChunkFile();  // empty inner chunk: fill value
    return file.slice(static_cast<std::size_t>(offset), static_cast<std::size_t>(nbytes));
}

}  // namespace zarrcrop
