// Turns one chunk file into bytes in the output: read, validate, decode only what the
// destinations need, and stitch. A chunk may feed several destinations (batch crops sharing
// it); it is read and decoded once for all of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "array_spec.hpp"
#include "blosc_decoder.hpp"
#include "chunk_cache.hpp"
#include "chunk_source.hpp"
#include "stitcher.hpp"

namespace zarrcrop {

// One destination of a chunk's decoded bytes.
struct Stitch {
    int64_t src_offset = 0;  // bytes from the decoded chunk's start to the first element
    uint8_t* dst = nullptr;  // first destination element
    StridedCopy region;      // simplified (StridedCopy::simplify), at least one element
};

// Marks in `need` (one entry per Blosc block of `blocksize` bytes) the blocks that hold any
// byte the stitch reads.
void mark_needed_blocks(const Stitch& stitch, int64_t blocksize, std::vector<uint8_t>& need);

class ChunkDecoder {
public:
    // `cache` may be null or disabled; when enabled, chunks are decoded whole and kept.
    ChunkDecoder(const ArraySpec& spec, const FileChunkSource& source, ChunkCache* cache);

    // Reads chunk `coords` and writes every stitch. A missing chunk writes the fill value.
    // Throws ChunkError / ChunkIoError naming the array and the chunk key.
    void process(const int64_t* coords, const Stitch* stitches, std::size_t n) const;

    // Benchmark support: reads the chunk (untimed), then returns the seconds spent validating
    // and decoding exactly what process() would decode for these stitches (nothing is
    // stitched; a whole-chunk stitch may be decoded into its destination).
    double time_decode(const int64_t* coords, const Stitch* stitches, std::size_t n) const;

private:
    // Validates and decodes what the stitches need. Returns the decoded chunk's base address
    // (only the needed blocks are valid), or nullptr when it was decoded into the destination.
    const uint8_t* decode_needed(std::vector<uint8_t>& file, const Stitch* stitches,
                                 std::size_t n) const;
    // Decodes the blocks of a validated Blosc chunk not marked in `skip` (null: all) into dst.
    // May modify `file` (see bitshuffle.hpp).
    void decode_blocks(const BloscHeader& h, std::vector<uint8_t>& file, uint8_t* dst,
                       const std::vector<uint8_t>* skip) const;
    // Decodes a whole chunk file into a fresh buffer (for the cache).
    ChunkBytes decode_whole(std::vector<uint8_t>& file) const;
    void decode_and_stitch(std::vector<uint8_t>& file, const Stitch* stitches,
                           std::size_t n) const;

    const ArraySpec& spec_;
    const FileChunkSource& source_;
    ChunkCache* cache_;
    std::size_t chunk_bytes_;
};

}  // namespace zarrcrop
