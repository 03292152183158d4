// Error types thrown by the core. The binding layer maps them to Python exceptions:
//   ChunkError      -> zarrcrop.ChunkError (a ValueError): a chunk's bytes are malformed.
//   ChunkIoError    -> OSError: a chunk file exists but cannot be read.
//   std::invalid_argument -> ValueError, std::out_of_range -> IndexError.
#pragma once

#include <stdexcept>
#include <string>

namespace zarrcrop {

class ChunkError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A remote object changed while it was read (its version is not the one its index or first
// read saw): a ChunkError; kept state about it must be dropped.
class StaleObject : public ChunkError {
public:
    StaleObject(const std::string& what, std::string url)
        : ChunkError(what), url_(std::move(url)) {}
    const std::string& url() const noexcept { return url_; }

private:
    std::string url_;
};

class ChunkIoError : public std::runtime_error {
public:
    ChunkIoError(const std::string& what, int err) : std::runtime_error(what), errno_(err) {}
    int error_number() const noexcept { return errno_; }

private:
    int errno_;
};

}  // namespace zarrcrop
