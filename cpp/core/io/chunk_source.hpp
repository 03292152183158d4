// Where a chunk's bytes come from: a file of a local directory store (open + fstat once, then
// whole or ranged preads), or an object of a remote store (ranged fetches, io/object_source).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/object_source.hpp"

namespace zarrcrop {

// An open chunk file, or a chunk object of a remote store. Move-only; closes the descriptor
// when destroyed.
class ChunkFile {
public:
    ChunkFile() = default;
    // A chunk stored at [base, base + size) of the file (base > 0 inside a shard).
    ChunkFile(int fd, std::size_t size, std::string path, std::size_t base = 0)
        : fd_(fd), size_(size), base_(base), path_(std::move(path)) {}
    // A chunk stored at [base, base + size) of object `key` of `store` (its URL in messages);
    // `version` is the object's as a fetch reported it (reads that see another one fail).
    ChunkFile(std::shared_ptr<const ObjectSource> store, std::string key, std::size_t size,
              std::string version, std::size_t base = 0)
        : size_(size),
          base_(base),
          path_(store->url_of(key)),
          store_(std::move(store)),
          key_(std::move(key)),
          version_(std::move(version)) {}
    ChunkFile(ChunkFile&& other) noexcept { *this = std::move(other); }
    ChunkFile& operator=(ChunkFile&& other) noexcept;
    ChunkFile(const ChunkFile&) = delete;
    ChunkFile& operator=(const ChunkFile&) = delete;
    ~ChunkFile();

    bool is_open() const { return fd_ >= 0 || store_ != nullptr; }
    // A chunk object of a remote store: no descriptor, no page cache, no mapping.
    bool remote() const { return store_ != nullptr; }
    int fd() const { return fd_; }
    // The same descriptor (or object), narrowed to [offset, offset + size) of this file
    // (ownership moves).
    ChunkFile slice(std::size_t offset, std::size_t size) {
        ChunkFile part;
        if (store_) {
            part = ChunkFile(store_, key_, size, version_, base_ + offset);
        } else {
            part = ChunkFile(fd_, size, path_, base_ + offset);
        }
        part.set_identity(dev_, ino_, file_size_);
        fd_ = -1;
        store_.reset();
        return part;
    }
    // The file's identity and whole size at open time (fstat), for mappings of it.
    void set_identity(dev_t dev, ino_t ino, std::size_t file_size) {
        dev_ = dev;
        ino_ = ino;
        file_size_ = file_size;
    }
    dev_t dev() const { return dev_; }
    ino_t ino() const { return ino_; }
    std::size_t file_size() const { return file_size_; }
    // Where this chunk starts in the file (> 0 inside a shard).
    std::size_t base() const { return base_; }
    std::size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Reads exactly `len` bytes at `offset` into dst. Throws ChunkIoError on I/O errors and
    // ChunkError when the file is shorter than its size at open time (it was truncated), or a
    // remote object changed since it was opened.
    void read_at(std::size_t offset, std::size_t len, uint8_t* dst) const;
    // What read_at needs, by value: a read that outlives moves of this object (the I/O
    // stage's queued reads) reads through it while the descriptor stays open.
    struct Ref {
        int fd = -1;
        std::size_t base = 0;
        std::size_t size = 0;
        std::string path;
        std::shared_ptr<const ObjectSource> store;
        std::string key;
        std::string version;
        // `arrived` (may be null): told how many bytes of dst hold the chunk's bytes while a
        // remote fetch streams in (local reads: nothing before they return).
        void read_at(std::size_t offset, std::size_t len, uint8_t* dst,
                     const std::function<void(std::size_t)>* arrived = nullptr) const;
    };
    Ref ref() const { return Ref{fd_, base_, size_, path_, store_, key_, version_}; }
    const std::shared_ptr<const ObjectSource>& store() const { return store_; }
    const std::string& key() const { return key_; }
    const std::string& version() const { return version_; }

private:
    int fd_ = -1;
    std::size_t size_ = 0;
    std::size_t base_ = 0;
    std::string path_;
    std::shared_ptr<const ObjectSource> store_;
    std::string key_;
    std::string version_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    std::size_t file_size_ = 0;
};

// Reads exactly `len` bytes at `offset` of the chunk at `base` of object `key`: ChunkError
// naming `url` when the object ends early or its version is not `version` (when given).
// `arrived` (may be null) is told the bytes of dst written so far while they stream in, only
// those of the object at `version`.
void fetch_exactly(const ObjectSource& store, const std::string& key, const std::string& url,
                   const std::string& version, std::size_t base, std::size_t size,
                   std::size_t offset, std::size_t len, uint8_t* dst,
                   const std::function<void(std::size_t)>* arrived = nullptr);

class FileChunkSource {
public:
    explicit FileChunkSource(std::string root);

    const std::string& root() const { return root_; }
    std::string path_of(const std::string& key) const;
    // Opens the file for `key`. Returns a closed ChunkFile when it does not exist (the chunk is
    // then all fill value). Throws ChunkIoError when it exists but cannot be read (a directory,
    // permissions, ...) and ChunkError when it is larger than `max_bytes` (no valid chunk of this
    // array is that large).
    ChunkFile open(const std::string& key, std::size_t max_bytes) const;
    // Reads the whole file for `key` into `buf` (resized to its length); false when missing.
    bool read(const std::string& key, std::vector<uint8_t>& buf, std::size_t max_bytes) const;

private:
    std::string root_;
};

}  // namespace zarrcrop
