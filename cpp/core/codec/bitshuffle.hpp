// Undoing Blosc's shuffle filters: bit-unshuffle for 1-byte items (the layout Blosc's
// BITSHUFFLE filter writes for typesize 1), and built on it, bit- and byte-unshuffle for any
// item size (for the blocks zarrcrop decodes itself, see ChunkDecoder::streams_direct).
//
// C-Blosc2 undoes this filter with a scalar loop for odd item sizes (its SIMD kernels need item
// sizes that are multiples of 2 or 4), which costs about as much as the zstd decode itself for
// uint8 images. zarrcrop therefore asks C-Blosc2 for the still-shuffled block and unshuffles it
// here with SSE2 (baseline on x86-64; a portable loop elsewhere).
#pragma once

#include <cstddef>
#include <cstdint>

namespace zarrcrop {

// src holds 8 bit planes of n / 8 bytes each (plane k = bit k of every item, item i at bit
// i % 8 of byte i / 8); writes the n items to dst. Requires n % 8 == 0; src and dst must not
// overlap.
void bitunshuffle_u8(const uint8_t* src, uint8_t* dst, std::size_t n);

// Items [a, b) of a bit-shuffled block of 1-byte items (src: 8 planes of `planes` bytes, so
// 8 * planes items) to dst[0, b - a): unshuffles only the 8-item groups the range touches,
// writing whole 128-item steps straight to dst. Requires b <= 8 * planes.
void bitunshuffle_u8_range(const uint8_t* src, std::size_t planes, std::size_t a, std::size_t b,
                           uint8_t* dst);

// Undoes Blosc's byte SHUFFLE of one block of `bytes` bytes: src holds `typesize` planes of
// bytes / typesize bytes (plane j = byte j of every item); dst receives the items. Bytes past
// the last whole item are copied as they are (as C-Blosc2 does). src and dst must not overlap.
void byte_unshuffle(const uint8_t* src, uint8_t* dst, std::size_t bytes, std::size_t typesize);

// Undoes Blosc's BITSHUFFLE of one block of a Blosc1-format (version 2) chunk, as C-Blosc2
// does for that format: when the block's item count (bytes / typesize) is a multiple of 8, src
// holds 8 * typesize bit planes (plane 8j + k = bit k of byte j of every item) followed by the
// leftover bytes, else the block was stored unshuffled and is copied. `tmp` must hold `bytes`
// bytes; src, dst and tmp must not overlap.
void blosc1_bitunshuffle(const uint8_t* src, uint8_t* dst, std::size_t bytes, std::size_t typesize,
                         uint8_t* tmp);
// True when a Blosc1 block of `bytes` bytes with this typesize was bit-shuffled: its item
// count is a multiple of 8 (else it was stored as it is).
inline bool blosc1_block_bitshuffled(std::size_t bytes, std::size_t typesize) {
    return typesize > 0 && (bytes / typesize) % 8 == 0;
}

// Items [i0, i1) of a block blosc1_bitunshuffle would undo (n items of `typesize` bytes, n a
// multiple of 8, src its 8 * typesize bit planes) to dst: only the 8-item groups the range
// touches are unshuffled. `tmp` holds (i1 - i0) * typesize bytes (unused for 1-byte items).
void blosc1_bitunshuffle_items(const uint8_t* src, std::size_t n, std::size_t typesize,
                               std::size_t i0, std::size_t i1, uint8_t* dst, uint8_t* tmp);

// Individual implementations, for tests: "portable", "sse2", "gfni". Returns false when the
// implementation is not available on this build or CPU.
bool bitunshuffle_u8_with(const char* impl, const uint8_t* src, uint8_t* dst, std::size_t n);
bool bitunshuffle_u8_range_with(const char* impl, const uint8_t* src, std::size_t planes,
                                std::size_t a, std::size_t b, uint8_t* dst);

}  // namespace zarrcrop
