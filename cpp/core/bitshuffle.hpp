// Bit-unshuffle for 1-byte items, the layout Blosc's BITSHUFFLE filter writes for typesize 1.
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

// Individual implementations, for tests: "portable", "sse2", "gfni". Returns false when the
// implementation is not available on this build or CPU.
bool bitunshuffle_u8_with(const char* impl, const uint8_t* src, uint8_t* dst, std::size_t n);

}  // namespace zarrcrop
