#include "io/chunk_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.hpp"

namespace zarrcrop {

namespace {

[[noreturn]] void io_fail(const std::string& path, const char* what, int err) {
    throw ChunkIoError(std::string(what) + " " + path + ": " + std::strerror(err), err);
}

}  // namespace

ChunkFile& ChunkFile::operator=(ChunkFile&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = other.fd_;
        size_ = other.size_;
        base_ = other.base_;
        path_ = std::move(other.path_);
        store_ = std::move(other.store_);
        key_ = std::move(other.key_);
        version_ = std::move(other.version_);
        dev_ = other.dev_;
        ino_ = other.ino_;
        file_size_ = other.file_size_;
        other.fd_ = -1;
    }
    return *this;
}

ChunkFile::~ChunkFile() {
    if (fd_ >= 0) ::close(fd_);
}

namespace {

// Exactly `len` bytes at `offset` of the chunk at [base, base + size) of `fd`.
void read_range(int fd, std::size_t base, std::size_t size, const std::string& path,
                std::size_t offset, std::size_t len, uint8_t* dst) {
    std::size_t done = 0;
    while (done < len) {
        const ssize_t n =
            ::pread(fd, dst + done, len - done, static_cast<off_t>(base + offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            io_fail(path, "cannot read chunk file", errno);
        }
        if (n == 0)
            throw ChunkError("chunk file " + path + " shrank while it was read (now " +
                             std::to_string(offset + done) + " bytes, was " + std::to_string(size) +
                             ")");
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace

void fetch_exactly(const ObjectSource& store, const std::string& key, const std::string& url,
                   const std::string& version, std::size_t base, std::size_t size,
                   std::size_t offset, std::size_t len, uint8_t* dst,
                   const std::function<void(std::size_t)>* arrived) {
    if (len == 0) return;
    FetchProgress progress;
    if (arrived != nullptr)
        progress = [&](std::size_t written, const std::string& from) {
            // Bytes of another version are not the chunk's: the check below fails the read.
            if (version.empty() || from.empty() || from == version)
                (*arrived)(std::min(written, len));
        };
    const ObjectRange got =
        store.fetch(key, base + offset, len, false, dst, arrived ? &progress : nullptr);
    if (!got.found)
        throw ChunkError("chunk object " + url + " disappeared while it was read (was " +
                         std::to_string(size) + " bytes)");
    if (!version.empty() && !got.version.empty() && got.version != version)
        throw StaleObject("chunk object " + url + " changed while it was read (version " + version +
                              ", now " + got.version + "); read it again",
                          url);
    if (got.offset != base + offset || got.bytes != len)
        throw ChunkError("chunk object " + url + " shrank while it was read (asked for " +
                         std::to_string(len) + " bytes at " + std::to_string(offset) + ", got " +
                         std::to_string(got.bytes) + "; the object has " +
                         std::to_string(got.object_size) + ")");
}

void ChunkFile::read_at(std::size_t offset, std::size_t len, uint8_t* dst) const {
    if (store_) {
        fetch_exactly(*store_, key_, path_, version_, base_, size_, offset, len, dst);
        return;
    }
    read_range(fd_, base_, size_, path_, offset, len, dst);
}

void ChunkFile::Ref::read_at(std::size_t offset, std::size_t len, uint8_t* dst,
                             const std::function<void(std::size_t)>* arrived) const {
    if (store) {
        fetch_exactly(*store, key, path, version, base, size, offset, len, dst, arrived);
        return;
    }
    read_range(fd, base, size, path, offset, len, dst);
}

FileChunkSource::FileChunkSource(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string FileChunkSource::path_of(const std::string& key) const {
    return root_ + "/" + key;
}

ChunkFile FileChunkSource::open(const std::string& key, std::size_t max_bytes) const {
    std::string path = path_of(key);
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait forever for a writer (the
    // fstat below then rejects it); it has no effect on regular files. O_NOCTTY: a terminal
    // device in place of a chunk must not become the controlling terminal.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        // ENOTDIR: a parent of the key is a file, so the chunk cannot exist either.
        if (errno == ENOENT || errno == ENOTDIR) return ChunkFile();
        io_fail(path, "cannot open chunk file", errno);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        io_fail(path, "cannot stat chunk file", err);
    }
    ChunkFile file(fd, static_cast<std::size_t>(st.st_size), path);
    file.set_identity(st.st_dev, st.st_ino, static_cast<std::size_t>(st.st_size));
    if (S_ISDIR(st.st_mode)) io_fail(path, "chunk path is a directory:", EISDIR);
    if (!S_ISREG(st.st_mode)) io_fail(path, "chunk path is not a regular file:", EINVAL);
    if (file.size() > max_bytes)
        throw ChunkError("chunk file " + path + " has " + std::to_string(file.size()) +
                         " bytes, more than the " + std::to_string(max_bytes) +
                         " a chunk of this array can have");
    return file;
}

bool FileChunkSource::read(const std::string& key, std::vector<uint8_t>& buf,
                           std::size_t max_bytes) const {
    ChunkFile file = open(key, max_bytes);
    if (!file.is_open()) return false;
    buf.resize(file.size());
    file.read_at(0, file.size(), buf.data());
    return true;
}

}  // namespace zarrcrop
