// Block planning: which Blosc blocks (or raw pages) of a chunk hold bytes the stitches read.
// Plain data in (a header's block size, the stitches), masks and byte ranges out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/blosc_decoder.hpp"
#include "io/read_ahead.hpp"
#include "stitch/stitcher.hpp"

namespace zarrcrop {

// Marks in `need` (one entry per block of `blocksize` bytes) the blocks that hold any byte the
// stitch reads. Throws ChunkError if the stitch reaches past the last block.
void mark_needed_blocks(const Stitch& stitch, int64_t blocksize, std::vector<uint8_t>& need);

// Sets `skip` to one entry per block of `h`, 1 for the blocks no stitch needs (all 0 with
// `whole`); returns how many are needed.
std::size_t plan_blocks(const BloscHeader& h, const Stitch* stitches, std::size_t n, bool whole,
                        std::vector<uint8_t>& skip);

// True when the only destination receives the whole chunk as one contiguous run.
bool whole_chunk_destination(const Stitch* stitches, std::size_t n, std::size_t itemsize,
                             std::size_t chunk_bytes);

// One past the last chunk byte any stitch reads.
std::size_t needed_end(const Stitch* stitches, std::size_t n, std::size_t itemsize);

// The file ranges of the blocks `skip` keeps (every block with `all`), in block order.
std::vector<ByteRange> needed_ranges(const std::vector<BlockExtent>& extents,
                                     const std::vector<uint8_t>& skip, bool all);

}  // namespace zarrcrop
