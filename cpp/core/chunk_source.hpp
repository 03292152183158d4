// Reads whole chunk files from a local directory store with one open + fstat + pread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zarrcrop {

class FileChunkSource {
public:
    explicit FileChunkSource(std::string root);

    const std::string& root() const { return root_; }
    std::string path_of(const std::string& key) const;
    // Reads the file for `key` into `buf` (resized to the file length). Returns false when
    // the file does not exist (the chunk is then all fill value). Throws ChunkIoError when it
    // exists but cannot be read (a directory, permissions, I/O error, or larger than
    // `max_bytes`, which protects against reading huge unrelated files).
    bool read(const std::string& key, std::vector<uint8_t>& buf, std::size_t max_bytes) const;

private:
    std::string root_;
};

}  // namespace zarrcrop
