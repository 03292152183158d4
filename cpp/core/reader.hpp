// CropReader: the data path. A selection is planned into per-chunk tasks (ChunkPlan); each task
// reads one chunk file (FileChunkSource), validates and decodes it (BloscDecoder), and stitches
// the selected part into the caller's output buffer (copy_strided). Tasks run on the process
// thread pool; every worker owns its scratch buffers and decompression context.
#pragma once

#include <cstddef>
#include <vector>

#include "array_spec.hpp"
#include "chunk_plan.hpp"
#include "chunk_source.hpp"

namespace zarrcrop {

class CropReader {
public:
    // Throws std::invalid_argument for an inconsistent spec.
    explicit CropReader(ArraySpec spec);

    const ArraySpec& spec() const { return spec_; }

    // Reads `selection` (one DimSelection per array dimension) into `out`, a C-contiguous buffer
    // of shape (selection[d].count...) and exactly `out_nbytes` bytes. Thread-safe; blocks until
    // done. On error nothing is returned as success: the first error (ChunkError naming the array
    // and chunk key, ChunkIoError, std::out_of_range for a selection outside the array) is thrown
    // after all tasks have ended; `out` may then hold partial data.
    void read(const std::vector<DimSelection>& selection, void* out, std::size_t out_nbytes) const;

private:
    void read_task(const ChunkPlan& plan, std::size_t task, uint8_t* out,
                   const int64_t* out_strides) const;

    ArraySpec spec_;
    FileChunkSource source_;
    std::vector<int64_t> chunk_strides_;  // bytes, C order within a decoded chunk
};

}  // namespace zarrcrop
