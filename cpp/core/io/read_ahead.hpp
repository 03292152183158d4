// The I/O stage for local files: is a chunk's byte range in the page cache already, and
// asynchronous read-ahead of what is not. A read or a batch issues the read-ahead of all its
// cold ranges before it waits on any of them: the disk delivers about twice as much to a deep
// queue as to one read per thread, and decoding then overlaps the reads still in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace zarrcrop {

class ChunkFile;

// [start, end) bytes of a chunk, counted from the chunk's first byte.
struct ByteRange {
    std::size_t start = 0;
    std::size_t end = 0;
};

enum class Residency {
    Cached,     // every byte is in the page cache
    NotCached,  // some byte would have to come from the device
    Unknown,    // the kernel or file system cannot tell (the caller reads as if cached)
};

// Reads [offset, offset + len) of the chunk into dst only when all of it is in the page cache
// (preadv2 with RWF_NOWAIT): never waits for the device. dst holds the bytes when Cached.
// Throws ChunkIoError on other I/O errors.
Residency read_if_cached(const ChunkFile& file, std::size_t offset, std::size_t len, uint8_t* dst);

// Whether every page of [offset, offset + len) of a chunk mapped at `chunk` (its first byte,
// inside a mapping that starts on a page boundary at `map_base`) is resident (mincore).
Residency mapped_residency(const uint8_t* map_base, const uint8_t* chunk, std::size_t offset,
                           std::size_t len);

// Asks the kernel to start reading these ranges of the chunk into the page cache and returns
// at once (posix_fadvise WILLNEED). Ranges are sorted; ranges closer than kAheadMergeGap are
// merged into one request. Advice only: errors are ignored (the reads that follow report them).
void read_ahead(const ChunkFile& file, std::vector<ByteRange> ranges);

// Process-wide counts since the last reset, for tests and benchmarks (relaxed atomics: only
// cold reads touch them).
struct ReadAheadCounts {
    uint64_t cold_chunks = 0;  // chunks whose first bytes were not in the page cache
    uint64_t requests = 0;     // requests to the device: read-ahead advice and queued reads
    uint64_t bytes = 0;        // bytes they asked for
};
ReadAheadCounts read_ahead_counts();
void reset_read_ahead_counts();
// Counts a chunk found cold by its caller.
void count_cold_chunk();
// Counts a read of `bytes` from the device issued by the I/O stage's queue (read_queue.hpp).
void count_device_read(std::size_t bytes);

// Gaps up to this many bytes between ranges are read too, in one request (the device spends
// about as long on a seek as on this many bytes).
constexpr std::size_t kAheadMergeGap = 64 * 1024;

}  // namespace zarrcrop
