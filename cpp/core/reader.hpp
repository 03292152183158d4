// CropReader: the data path. A selection is planned into per-chunk tasks (ChunkPlan for one
// strided selection, a chunk-grouped batch plan for read_crops). Each chunk file is opened and
// its Blosc header and block offsets validated (FileChunkSource, ChunkDecoder); then every
// Blosc block the read needs is a task of its own that reads, validates and decodes it and
// stitches its part into the caller's output buffer. Tasks run on the process thread pool;
// every worker owns its scratch buffers and decompression contexts.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <vector>

#include "array_spec.hpp"
#include "chunk_cache.hpp"
#include "chunk_decoder.hpp"
#include "chunk_plan.hpp"
#include "chunk_source.hpp"
#include "shard_index.hpp"

namespace zarrcrop {

class CropReader {
public:
    // Throws std::invalid_argument for an inconsistent spec.
    // cache_bytes > 0 enables an LRU cache of decoded chunks of that many bytes.
    explicit CropReader(ArraySpec spec, std::size_t cache_bytes = 0);
    CropReader(const CropReader&) = delete;
    CropReader& operator=(const CropReader&) = delete;

    const ArraySpec& spec() const { return spec_; }
    ChunkCache& cache() const { return *cache_; }

    // Reads `selection` (one DimSelection per array dimension) into `out`, a C-contiguous buffer
    // of shape (selection[d].count...) and exactly `out_nbytes` bytes. Thread-safe; blocks until
    // done. Errors (ChunkError naming the array and chunk key, ChunkIoError, std::out_of_range
    // for a selection outside the array) are thrown after all tasks have ended; `out` may then
    // hold partial data and must not be used.
    void read(const std::vector<DimSelection>& selection, void* out, std::size_t out_nbytes) const;

    // Reads n crops of shape `crop_shape` starting at starts[i * ndim ...] into `out`, a
    // C-contiguous (n, *crop_shape) buffer of `out_nbytes` bytes. Chunks shared by several crops
    // are read and decoded once. With fill_outside, parts of a crop outside the array get the
    // fill value `fill` (itemsize bytes); otherwise such a crop throws std::out_of_range.
    void read_crops(const int64_t* starts, std::size_t n, const std::vector<int64_t>& crop_shape,
                    void* out, std::size_t out_nbytes, bool fill_outside,
                    const uint8_t* fill) const;

    // Benchmark support: single-threaded CPU seconds spent validating and decoding only what these
    // crops need (chunk files are read beforehand, untimed; nothing is stitched). With
    // `shared`, chunks shared by several crops count once, as in read_crops; otherwise each
    // crop is costed on its own, as in a loop of single reads.
    // Crops reaching outside the array throw std::out_of_range unless fill_outside.
    double decode_seconds(const int64_t* starts, std::size_t n,
                          const std::vector<int64_t>& crop_shape, bool shared,
                          bool fill_outside) const;

private:
    using ChunkWork = std::map<std::vector<int64_t>, std::vector<Stitch>>;
    // One chunk of a read and what goes where from it.
    struct ChunkTask {
        const int64_t* coords;
        const Stitch* stitches;
        std::size_t n;
    };
    // Runs a read's chunk tasks on the pool in two rounds: every chunk is opened and planned
    // (chunks that are missing, small, raw or not zstd are done in this round), then the
    // needed Blosc blocks of all remaining chunks are decoded as separate tasks, largest
    // first, so that the threads stay evenly loaded however few chunks a crop touches.
    // Chunks are taken a bounded number at a time (run_window), which bounds the files held
    // open.
    void run(const std::vector<ChunkTask>& tasks) const;
    void run_window(const ChunkTask* tasks, std::size_t count) const;
    // Validates the crops, fills the parts outside the array, and groups the remaining pieces
    // by chunk.
    ChunkWork plan_crops(const int64_t* starts, std::size_t n,
                         const std::vector<int64_t>& crop_shape, void* out,
                         std::size_t out_nbytes, bool fill_outside, const uint8_t* fill) const;

    ArraySpec spec_;
    FileChunkSource source_;
    std::unique_ptr<ShardReader> shards_;  // null unless sharded
    std::unique_ptr<ChunkCache> cache_;
    ChunkDecoder decoder_;
    std::vector<int64_t> chunk_strides_;  // bytes, C order within a decoded chunk
};

}  // namespace zarrcrop
