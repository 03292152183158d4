// CropReader: the data path. A selection is planned into per-chunk tasks (ChunkPlan for one
// strided selection, CropPlan for a batch of crops), a bounded window at a time. Each chunk
// file is opened and its Blosc header and block offsets validated (FileChunkSource,
// ChunkDecoder); then every Blosc block the read needs is a task of its own that reads,
// validates and decodes it and stitches its part into the caller's output buffer. Tasks run
// on the process thread pool; every worker owns its scratch buffers and decompression
// contexts.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

#include "array_spec.hpp"
#include "runtime/cancel.hpp"
#include "decode/chunk_cache.hpp"
#include "decode/chunk_decoder.hpp"
#include "plan/chunk_plan.hpp"
#include "io/chunk_source.hpp"
#include "io/object_source.hpp"
#include "plan/crop_plan.hpp"
#include "io/shard_index.hpp"

namespace zarrcrop {

// Held by shared_ptr (prefetch on an object store hands it to the fetch-ahead threads).
class CropReader : public std::enable_shared_from_this<CropReader> {
public:
    // Throws std::invalid_argument for an inconsistent spec.
    // cache_bytes > 0 enables an LRU cache of decoded chunks of that many bytes. With `fetch`,
    // chunks are objects of a remote store whose location is spec.root (io/object_source).
    explicit CropReader(ArraySpec spec, std::size_t cache_bytes = 0, FetchFn fetch = {});
    CropReader(const CropReader&) = delete;
    CropReader& operator=(const CropReader&) = delete;

    const ArraySpec& spec() const { return spec_; }
    ChunkCache& cache() const { return *cache_; }

    // Reads `selection` (one DimSelection per array dimension) into `out`, a C-contiguous buffer
    // of shape (selection[d].count...) and exactly `out_nbytes` bytes. Thread-safe; blocks until
    // done. Errors (ChunkError naming the array and chunk key, ChunkIoError, std::out_of_range
    // for a selection outside the array, Cancelled when `cancel` was raised) are thrown after
    // all tasks have ended; `out` may then hold partial data and must not be used.
    void read(const std::vector<DimSelection>& selection, void* out, std::size_t out_nbytes,
              const CancelFlags& cancel = {}) const;

    // Reads n crops of shape `crop_shape` starting at starts[i * ndim ...] into `out`, a
    // C-contiguous (n, *crop_shape) buffer of `out_nbytes` bytes. Chunks shared by several crops
    // are read and decoded once (within a planning window of kWindowPieces pieces). With
    // fill_outside, parts of a crop outside the array get the fill value `fill` (itemsize
    // bytes); otherwise such a crop throws std::out_of_range. `starts` must not change during
    // the call (pass a private copy).
    void read_crops(const int64_t* starts, std::size_t n, const std::vector<int64_t>& crop_shape,
                    void* out, std::size_t out_nbytes, bool fill_outside, const uint8_t* fill,
                    const CancelFlags& cancel = {}) const;

    // Starts reading ahead, into the page cache, what these crops (as read_crops takes them)
    // will need that is not cached yet (ChunkDecoder::prefetch_chunk: chunks read piecewise
    // get their header first, their needed blocks once the header is cached), each chunk
    // once, until `budget` bytes are asked for; then returns without waiting for the device.
    // Returns the bytes asked for. Crops reaching outside the array throw std::out_of_range
    // unless fill_outside. `starts` must not change during the call.
    // On an object store the requests are made on fetch-ahead threads (io/fetch_ahead: what
    // a read will ask for, held in memory for it, ChunkDecoder::fetch_ahead_chunk): the
    // value returned is then an estimate (the store's average chunk object size per chunk),
    // and `budget` bounds what those threads fetch.
    std::size_t prefetch(const int64_t* starts, std::size_t n,
                         const std::vector<int64_t>& crop_shape, bool fill_outside,
                         std::size_t budget, const CancelFlags& cancel = {}) const;

    // Benchmark support: single-threaded CPU seconds spent validating and decoding only what these
    // crops need (chunk files are read beforehand, untimed; nothing is stitched). With
    // `shared`, chunks shared by several crops count once, as in read_crops; otherwise each
    // crop is costed on its own, as in a loop of single reads. Needs memory for one crop.
    // Crops reaching outside the array throw std::out_of_range unless fill_outside.
    double decode_seconds(const int64_t* starts, std::size_t n,
                          const std::vector<int64_t>& crop_shape, bool shared,
                          bool fill_outside) const;

private:
    // Runs chunk tasks on the pool, a window of open_file_window() chunks at a time (the files
    // a window holds open), retrying chunks whose file could not be opened for want of file
    // descriptors (EMFILE) in smaller windows once the window's own files are closed.
    void run(const ChunkTask* tasks, std::size_t count, const CancelFlags& cancel) const;
    // One window in three rounds: every chunk's file is opened and, where its bytes are not in
    // the page cache, read ahead (the I/O stage, io/read_ahead.hpp); every chunk is planned
    // (chunks that are missing, small, raw or not zstd are done in this round); then the
    // needed Blosc blocks of all
    // remaining chunks are decoded as separate tasks, largest first, so that the threads stay
    // evenly loaded however few chunks a crop touches. Tasks that hit EMFILE go to `retry`
    // (null: the error is thrown).
    void run_window(const ChunkTask* tasks, std::size_t count, const CancelFlags& cancel,
                    std::vector<ChunkTask>* retry) const;
    // A chunk a prefetch will fetch ahead, with its own copies of everything (the tasks
    // outlive the call and its plan, whose arena the stitches' regions point into).
    struct AheadChunk {
        AheadChunk(const ChunkTask& t, std::size_t ndim);
        AheadChunk(const AheadChunk&) = delete;
        AheadChunk& operator=(const AheadChunk&) = delete;
        std::vector<int64_t> coords;
        std::vector<Stitch> stitches;
        std::vector<int64_t> dims;  // the regions' counts and strides, which point here
    };
    using AheadChunks = std::vector<std::shared_ptr<const AheadChunk>>;
    // Prefetch of a sharded array's window, on a fetch-ahead thread: inner chunks whose
    // header is kept have their blocks fetched ahead in merged ranges per shard (as a read
    // merges them), the others chunk by chunk; each request a task of its own, within `left`.
    void fetch_ahead_shards(const AheadChunks& chunks,
                            const std::shared_ptr<std::atomic<std::size_t>>& left) const;

    ArraySpec spec_;
    FileChunkSource source_;
    std::shared_ptr<const ObjectSource> store_;  // null: a local directory store
    std::unique_ptr<ShardReader> shards_;        // null unless sharded
    std::unique_ptr<ChunkCache> cache_;
    ChunkDecoder decoder_;
    std::vector<int64_t> chunk_strides_;  // bytes, C order within a decoded chunk
};

// Pieces (crop x chunk parts) planned at a time by read_crops: bounds its planning memory
// (about 100 bytes each) however many crops a batch has.
constexpr std::size_t kWindowPieces = 16384;
// Chunk files a read holds open at once: a share of RLIMIT_NOFILE's soft limit, within [16, 256].
std::size_t open_file_window();

}  // namespace zarrcrop
