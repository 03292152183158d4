// Blosc block decoding: a validated header and a block's compressed bytes in, its decoded and
// unshuffled bytes out, into a buffer or straight into the stitches' destinations. Works on
// the calling thread's scratch (runtime/worker_scratch.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/blosc_decoder.hpp"
#include "stitch/stitcher.hpp"

namespace zarrcrop {

// A chunk file's bytes in memory, writable because decoding
// may patch the copy of the header (see bitshuffle.hpp).
struct MutableBytes {
    uint8_t* ptr = nullptr;
    std::size_t len = 0;
    MutableBytes() = default;
    MutableBytes(uint8_t* p, std::size_t n) : ptr(p), len(n) {}
    explicit MutableBytes(std::vector<uint8_t>& v) : ptr(v.data()), len(v.size()) {}
    uint8_t* data() const { return ptr; }
    std::size_t size() const { return len; }
    uint8_t& operator[](std::size_t i) const { return ptr[i]; }
};

// The shuffle filter a block of this chunk went through (Blosc1's precedence).
enum class BlockFilter { None, Byte, Bit };
BlockFilter block_filter(const BloscHeader& h);

// True when zarrcrop decodes this chunk's blocks itself (zstd or lz4 streams, any shuffle
// filter; not the delta filter) instead of C-Blosc2.
bool streams_direct(const BloscHeader& h);

// Decodes block b (its `len` validated bytes at `block`) into `out`, which receives its
// decoded, unshuffled bytes. streams_direct(h) must hold.
void decode_block_to(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b,
                     uint8_t* out);

// Decodes block b (as decode_block_to) into its place in the only destination (`whole`), or
// through one block-sized buffer, still in cache, into the parts of the n stitches it holds.
// With n == 0 (benchmarks) it only decodes.
void finish_block(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b,
                  const Stitch* stitches, std::size_t n, bool whole);

// Decodes the blocks of a validated Blosc chunk not marked in `skip` (null: all) into dst
// through C-Blosc2 (own unshuffle for bit-shuffled bytes). May modify `file` (see
// bitshuffle.hpp).
void decode_blocks(const BloscHeader& h, MutableBytes file, uint8_t* dst, std::size_t chunk_bytes,
                   const std::vector<uint8_t>* skip);

// Bit-shuffled 1-byte items, which C-Blosc2 would unshuffle with a scalar loop: decode_blocks
// and split decoding unshuffle them with unshuffle_block instead.
bool own_unshuffle(const BloscHeader& h);
// Unshuffles block b of `shuffled` (a chunk-sized buffer) into its place in dst.
void unshuffle_block(const BloscHeader& h, int64_t b, const uint8_t* shuffled, uint8_t* dst);

}  // namespace zarrcrop
