// Chunk and shard objects of a remote store (S3, GCS, HTTP): the core asks only for byte ranges
// of keys, through a function the caller supplies (the Python layer's HTTP client). The I/O
// stage's threads call it, many at once; decode and stitch never know where bytes came from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace zarrcrop {

// What a fetch of a byte range found.
struct ObjectRange {
    bool found = false;           // false: no such object (the chunk is the fill value)
    std::size_t object_size = 0;  // the whole object's size in bytes
    std::size_t offset = 0;       // where the bytes written start in the object
    std::size_t bytes = 0;        // bytes written to dst
    std::string version;          // ETag or the like: another value means the object changed
};

// Fetches up to `len` bytes of object `key` starting at `offset` into `dst` (fewer when the
// object ends earlier, none past its end); with `from_end`, its last `len` bytes (all of it
// when shorter). Throws ChunkIoError (denied, unreachable, timed out, failing after retries)
// naming the URL, ChunkError when the reply contradicts the request. Called from several
// threads at once.
using FetchFn = std::function<ObjectRange(const std::string& key, std::size_t offset,
                                          std::size_t len, bool from_end, uint8_t* dst)>;

class ObjectSource {
public:
    ObjectSource(std::string root, FetchFn fetch)
        : root_(std::move(root)), fetch_(std::move(fetch)) {
        while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    }
    // The store's location (a URL prefix), for messages.
    const std::string& root() const { return root_; }
    std::string url_of(const std::string& key) const { return root_ + "/" + key; }
    ObjectRange fetch(const std::string& key, std::size_t offset, std::size_t len, bool from_end,
                      uint8_t* dst) const {
        return fetch_(key, offset, len, from_end, dst);
    }

private:
    std::string root_;
    FetchFn fetch_;
};

}  // namespace zarrcrop
