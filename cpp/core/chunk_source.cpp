#include "chunk_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.hpp"

namespace zarrcrop {

namespace {

// Closes the descriptor on every path out of read().
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

[[noreturn]] void io_fail(const std::string& path, const char* what, int err) {
    throw ChunkIoError(std::string(what) + " " + path + ": " + std::strerror(err), err);
}

}  // namespace

FileChunkSource::FileChunkSource(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string FileChunkSource::path_of(const std::string& key) const { return root_ + "/" + key; }

bool FileChunkSource::read(const std::string& key, std::vector<uint8_t>& buf,
                           std::size_t max_bytes) const {
    const std::string path = path_of(key);
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0) {
        // ENOTDIR: a parent of the key is a file, so the chunk cannot exist either.
        if (errno == ENOENT || errno == ENOTDIR) return false;
        io_fail(path, "cannot open chunk file", errno);
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) io_fail(path, "cannot stat chunk file", errno);
    if (S_ISDIR(st.st_mode)) io_fail(path, "chunk path is a directory:", EISDIR);
    if (!S_ISREG(st.st_mode)) io_fail(path, "chunk path is not a regular file:", EINVAL);
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size > max_bytes)
        throw ChunkError("chunk file " + path + " has " + std::to_string(size) +
                         " bytes, more than the " + std::to_string(max_bytes) +
                         " a chunk of this array can have");
    buf.resize(size);
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pread(f.fd, buf.data() + done, size - done, static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR) continue;
            io_fail(path, "cannot read chunk file", errno);
        }
        if (n == 0) break;  // the file shrank while we read it
        done += static_cast<std::size_t>(n);
    }
    buf.resize(done);
    return true;
}

}  // namespace zarrcrop
