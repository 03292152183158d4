#include "io/read_ahead.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "errors.hpp"
#include "io/chunk_source.hpp"

namespace zarrcrop {

namespace {

std::size_t page_size() {
    static const std::size_t size = [] {
        const long p = ::sysconf(_SC_PAGESIZE);
        return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
    }();
    return size;
}

std::atomic<uint64_t> g_cold_chunks{0};
std::atomic<uint64_t> g_requests{0};
std::atomic<uint64_t> g_bytes{0};

}  // namespace

ReadAheadCounts read_ahead_counts() {
    return ReadAheadCounts{g_cold_chunks.load(std::memory_order_relaxed),
                           g_requests.load(std::memory_order_relaxed),
                           g_bytes.load(std::memory_order_relaxed)};
}

void reset_read_ahead_counts() {
    g_cold_chunks.store(0, std::memory_order_relaxed);
    g_requests.store(0, std::memory_order_relaxed);
    g_bytes.store(0, std::memory_order_relaxed);
}

void count_cold_chunk() {
    g_cold_chunks.fetch_add(1, std::memory_order_relaxed);
}

void count_device_read(std::size_t bytes) {
    g_requests.fetch_add(1, std::memory_order_relaxed);
    g_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

Residency read_if_cached(const ChunkFile& file, std::size_t offset, std::size_t len, uint8_t* dst) {
    if (len == 0) return Residency::Cached;
#ifdef RWF_NOWAIT
    std::size_t done = 0;
    while (done < len) {
        iovec v{dst + done, len - done};
        const ssize_t n = ::preadv2(file.fd(), &v, 1,
                                    static_cast<off_t>(file.base() + offset + done), RWF_NOWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return Residency::NotCached;
            // Kernels before 4.14 and some file systems do not support the flag.
            if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)
                return Residency::Unknown;
            throw ChunkIoError(
                "cannot read chunk file " + file.path() + ": " + std::strerror(errno), errno);
        }
        // A short read: the rest is not cached (or the file shrank; the real read reports it).
        if (n == 0) return Residency::NotCached;
        done += static_cast<std::size_t>(n);
    }
    return Residency::Cached;
#else
    (void)file;
    (void)offset;
    (void)dst;
    return Residency::Unknown;
#endif
}

Residency mapped_residency(const uint8_t* map_base, const uint8_t* chunk, std::size_t offset,
                           std::size_t len) {
    if (len == 0) return Residency::Cached;
    const std::size_t page = page_size();
    const auto from = static_cast<std::size_t>(chunk - map_base) + offset;
    const std::size_t first = from / page;
    const std::size_t last = (from + len - 1) / page;
    // On the stack: one byte per page, 512 pages (2 MiB) per call.
    unsigned char vec[512];
    for (std::size_t p = first; p <= last;) {
        const std::size_t count = std::min<std::size_t>(last - p + 1, sizeof vec);
        // mincore's address is not const; it only reads the page tables.
        void* addr = const_cast<uint8_t*>(map_base + p * page);
        if (::mincore(addr, count * page, vec) != 0) return Residency::Unknown;
        for (std::size_t i = 0; i < count; ++i)
            if ((vec[i] & 1) == 0) return Residency::NotCached;
        p += count;
    }
    return Residency::Cached;
}

void read_ahead(const ChunkFile& file, std::vector<ByteRange> ranges) {
    if (!file.is_open() || ranges.empty()) return;
    std::sort(ranges.begin(), ranges.end(),
              [](const ByteRange& x, const ByteRange& y) { return x.start < y.start; });
    std::size_t lo = ranges[0].start;
    std::size_t hi = ranges[0].end;
    const auto advise = [&](std::size_t a, std::size_t b) {
        if (b <= a) return;
        (void)::posix_fadvise(file.fd(), static_cast<off_t>(file.base() + a),
                              static_cast<off_t>(b - a), POSIX_FADV_WILLNEED);
        g_requests.fetch_add(1, std::memory_order_relaxed);
        g_bytes.fetch_add(b - a, std::memory_order_relaxed);
    };
    for (std::size_t i = 1; i < ranges.size(); ++i) {
        if (ranges[i].start <= hi + kAheadMergeGap) {
            hi = std::max(hi, ranges[i].end);
            continue;
        }
        advise(lo, hi);
        lo = ranges[i].start;
        hi = ranges[i].end;
    }
    advise(lo, hi);
}

}  // namespace zarrcrop
