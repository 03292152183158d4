// Bytes-to-bytes codecs besides Blosc: zstd (from the zstd copy inside the linked C-Blosc2 static
// library, which ships no zstd header) and crc32c. Each decode function validates what it can and
// throws ChunkError naming the codec.
#pragma once

#include <cstddef>
#include <cstdint>
#include "runtime/byte_buffer.hpp"

namespace zarrcrop {

// CRC-32C (Castagnoli), as zarr v3's crc32c codec computes it.
uint32_t crc32c(const uint8_t* data, std::size_t size);

// Checks the 4-byte little-endian CRC-32C trailer; returns the payload length (size - 4).
std::size_t check_crc32c(const uint8_t* data, std::size_t size);

// A zstd decompression context (one per worker thread).
class ZstdDecoder {
public:
    ZstdDecoder();
    ~ZstdDecoder();
    ZstdDecoder(const ZstdDecoder&) = delete;
    ZstdDecoder& operator=(const ZstdDecoder&) = delete;

    // Decompresses the zstd frames in src (one or several, concatenated; skippable frames are
    // skipped, as zstd and numcodecs do) into dst and returns the decompressed size: exactly
    // `expected` when `exact` (the last codec before the raw chunk bytes), else the sum of
    // the sizes the frames announce (at most `max_size`).
    std::size_t decompress(const uint8_t* src, std::size_t size, ByteBuffer& dst,
                           std::size_t expected, bool exact, std::size_t max_size);
    // Decompresses the zstd frame(s) in src into dst, which they must fill exactly
    // (`expected` bytes); throws ChunkError otherwise.
    void decompress_exact(const uint8_t* src, std::size_t size, uint8_t* dst, std::size_t expected);
    // Decodes only the first `want` (<= expected) bytes into dst when src is exactly one zstd
    // frame announcing `expected` bytes (its block structure is checked, the rest of its
    // content is not decoded); returns false, having done nothing, for anything else (the
    // caller then decodes in full, which reports what is wrong).
    bool decompress_prefix(const uint8_t* src, std::size_t size, uint8_t* dst, std::size_t expected,
                           std::size_t want);

private:
    void* ctx_;
};

// gzip (zarr v3 `gzip`, numcodecs GZip), inflated by the zlib-ng copy inside the static
// C-Blosc2 library. The library ships no zlib-ng header, so the stream struct is declared here
// for zlib-ng 2.x; gzip_available() checks the library's version before it is ever used.
bool gzip_available();
// Inflates the gzip members in src (one or several, concatenated, as bgzip writes; zero
// padding after the last is ignored, as Python's gzip module does) into dst and returns the
// decompressed size: exactly `expected` when `exact`, else at most max_size.
std::size_t gunzip(const uint8_t* src, std::size_t size, ByteBuffer& dst, std::size_t expected,
                   bool exact, std::size_t max_size);

}  // namespace zarrcrop
