// Raw chunk bytes (no compressor, or a chunk Blosc stored memcpyed) copied to the stitches
// through a cache-sized window: only the pages that hold needed bytes are read.
#pragma once

#include <cstddef>

#include "io/chunk_source.hpp"
#include "stitch/stitcher.hpp"

namespace zarrcrop {

// For raw chunk bytes (chunk_bytes of them) starting at data_offset in `file`: reads the runs
// of pages that hold needed bytes through one window buffer, copying each window to the
// destinations right after it is read.
void stream_raw(const ChunkFile& file, std::size_t data_offset, std::size_t chunk_bytes,
                const Stitch* stitches, std::size_t n);

}  // namespace zarrcrop
