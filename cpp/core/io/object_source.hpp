// Chunk and shard objects of a remote store (S3, GCS, HTTP): the core asks only for byte ranges
// of keys, through a function the caller supplies (the Python layer's HTTP client). The I/O
// stage's threads call it, many at once; decode and stitch never know where bytes came from.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace zarrcrop {

// What a fetch of a byte range found.
struct ObjectRange {
    bool found = false;           // false: no such object (the chunk is the fill value)
    std::size_t object_size = 0;  // the whole object's size in bytes
    std::size_t offset = 0;       // where the bytes written start in the object
    std::size_t bytes = 0;        // bytes written to dst
    std::string version;          // ETag or the like: another value means the object changed
};

// While a fetch streams in: the first `written` bytes of dst hold the object's bytes from the
// offset asked for, as sent by the object at `version` (ETag; empty when unknown). Lets a
// reader decode the first blocks of a response while the rest is on the way. Called any
// number of times, from the fetching thread; a retried fetch may start again from 0.
using FetchProgress = std::function<void(std::size_t written, const std::string& version)>;

// Fetches up to `len` bytes of object `key` starting at `offset` into `dst` (fewer when the
// object ends earlier, none past its end); with `from_end`, its last `len` bytes (all of it
// when shorter). Throws ChunkIoError (denied, unreachable, timed out, failing after retries)
// naming the URL, ChunkError when the reply contradicts the request. Called from several
// threads at once. `progress` (may be null; never with from_end) is told as bytes arrive.
using FetchFn =
    std::function<ObjectRange(const std::string& key, std::size_t offset, std::size_t len,
                              bool from_end, uint8_t* dst, const FetchProgress* progress)>;

// What fetches have cost so far, to choose between one round trip for a whole chunk and two
// for its header, then only the blocks a read needs (exponentially weighted averages; 0 until
// measured).
struct FetchCosts {
    double round_trip = 0;        // seconds of a small request (<= 64 KiB)
    double bytes_per_second = 0;  // of larger ones (>= 128 KiB), their round trip taken out
    double object_size = 0;       // bytes of a chunk object (note_chunk_size)
};

class ObjectSource {
public:
    ObjectSource(std::string root, FetchFn fetch);
    ObjectSource(const ObjectSource&) = delete;
    ObjectSource& operator=(const ObjectSource&) = delete;
    // The store's location (a URL prefix), for messages.
    const std::string& root() const { return root_; }
    std::string url_of(const std::string& key) const { return root_ + "/" + key; }
    // Answers from bytes fetched ahead when they cover the range (waiting for such a fetch
    // still in flight); otherwise calls the fetch function and records what it cost.
    // `progress` as for FetchFn (bytes fetched ahead arrive all at once: not called).
    ObjectRange fetch(const std::string& key, std::size_t offset, std::size_t len, bool from_end,
                      uint8_t* dst, const FetchProgress* progress = nullptr) const;
    // Fetches [offset, offset + len) of `key` ahead of the read that will need it and holds
    // it (process_prefetched()), unless held or in flight already; with `copy`, its bytes are
    // copied there too. Counts the bytes it asks for against `budget`. Empty when there is
    // no room (budget, or kPrefetchHoldBytes held). Throws what the fetch throws.
    std::optional<ObjectRange> fetch_ahead(const std::string& key, std::size_t offset,
                                           std::size_t len, std::vector<uint8_t>* copy,
                                           std::atomic<std::size_t>& budget) const;
    FetchCosts costs() const;
    // A chunk object's size, as its first read told it (for the averages).
    void note_chunk_size(std::size_t bytes) const;

private:
    ObjectRange fetch_direct(const std::string& key, std::size_t offset, std::size_t len,
                             bool from_end, uint8_t* dst, const FetchProgress* progress) const;

    std::string root_;
    FetchFn fetch_;
    mutable std::mutex mutex_;
    mutable FetchCosts costs_;
};

}  // namespace zarrcrop
