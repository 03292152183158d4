// Validation and decompression of Blosc1-format chunks (what numcodecs.Blosc writes for zarr v2
// and what zarr v3's `blosc` codec writes). Every header field and every block/stream offset is
// checked against the buffer and the expected chunk size before C-Blosc2 sees the bytes, since
// Blosc decoders have a history of malformed-input bugs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct blosc2_context_s;

namespace zarrcrop {

struct BloscHeader {
    uint8_t version = 0;
    uint8_t flags = 0;
    uint8_t typesize = 0;
    int32_t nbytes = 0;
    int32_t blocksize = 0;
    int32_t cbytes = 0;

    bool memcpyed() const { return (flags & 0x02) != 0; }
    int32_t nblocks() const { return (nbytes + blocksize - 1) / blocksize; }
};

// Parses and validates a whole Blosc1 chunk of `size` bytes that must decode to exactly
// `expected_nbytes` bytes of items of `itemsize` bytes. Returns the header, or throws
// ChunkError whose message says what is wrong (without naming the chunk; callers add that).
BloscHeader validate_blosc_chunk(const uint8_t* src, std::size_t size, std::size_t expected_nbytes,
                                 std::size_t itemsize);

// One decompression context (single-threaded); each worker thread owns one.
class BloscDecoder {
public:
    BloscDecoder();
    ~BloscDecoder();
    BloscDecoder(const BloscDecoder&) = delete;
    BloscDecoder& operator=(const BloscDecoder&) = delete;

    // Decompresses a chunk already accepted by validate_blosc_chunk into dst (dst_size must be
    // the header's nbytes). Throws ChunkError if C-Blosc2 reports anything unexpected.
    void decompress(const uint8_t* src, std::size_t size, uint8_t* dst, std::size_t dst_size);

    // Decompresses only the blocks whose `skip` entry is 0 (one entry per block of the
    // validated header `h`) into their places in dst (dst_size = h.nbytes); the bytes of
    // skipped blocks are left untouched.
    void decompress_blocks(const BloscHeader& h, const uint8_t* src, std::size_t size, uint8_t* dst,
                           std::size_t dst_size, const std::vector<uint8_t>& skip);

private:
    blosc2_context_s* ctx_;
};

// Must be called once per process before any decoding (idempotent).
void blosc_library_init();
std::string blosc_library_version();

}  // namespace zarrcrop
