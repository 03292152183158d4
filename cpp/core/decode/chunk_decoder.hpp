// The router of the decode path: for each chunk, one choice of route (missing, small or
// whole, decoded-chunk cache, codec chain, raw window, Blosc blocks read whole or piecewise,
// block jobs decoded on the pool) over the stages: the I/O stage (io/read_ahead.hpp), block
// planning (block_plan.hpp), Blosc block decoding (block_decode.hpp), the codec chain
// (codec_chain.hpp), raw windows (raw_window.hpp) and the stitcher. A chunk may feed several
// destinations (batch crops sharing it); it is read and decoded once for all of them.
// ChunkDecoder's members are defined by job: the routes in chunk_decoder.cpp, block jobs in
// block_job.cpp, remote chunks in remote_chunk.cpp, remote prefetch in remote_ahead.cpp and
// the benchmark's decode_seconds in decode_timing.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "array_spec.hpp"
#include "codec/blosc_decoder.hpp"
#include "decode/block_decode.hpp"
#include "runtime/cancel.hpp"
#include "decode/chunk_cache.hpp"
#include "io/chunk_source.hpp"
#include "io/file_map.hpp"
#include "io/object_source.hpp"
#include "io/read_ahead.hpp"
#include "io/read_queue.hpp"
#include "io/shard_index.hpp"
#include "stitch/stitcher.hpp"
#include "runtime/byte_buffer.hpp"
#include "runtime/thread_pool.hpp"

namespace zarrcrop {

// Compressed chunks smaller than this are read with one pread; larger ones read only the
// blocks that the destinations need.
constexpr std::size_t kPartialReadMin = 64 * 1024;
// The first read of a cold chunk read piecewise by the I/O stage: its header and the offsets
// of up to about 2,000 blocks (more are read when the header says so).
constexpr std::size_t kHeadRead = 8 * 1024;
// The first read of a remote Blosc chunk: its header and block offsets, and whole any chunk up
// to this size, in one round trip (a round trip costs as much as a few hundred KiB there).
constexpr std::size_t kRemoteFirstRead = 64 * 1024;
// Cold blocks are read in pieces of at most this many bytes (a block larger than that alone):
// each decoded as soon as it has arrived.
constexpr std::size_t kReadPiece = 256 * 1024;
// Needed blocks closer than this are read in one piece, the gap included.
constexpr std::size_t kReadMergeGap = 16 * 1024;
// The same for remote objects: a request costs a round trip and the server's work per
// request, worth about a MiB of transfer; larger pieces, larger gaps read through.
constexpr std::size_t kRemoteReadPiece = 8u << 20;
constexpr std::size_t kRemoteMergeGap = 1u << 20;

// A chunk whose needed Blosc blocks are decoded one at a time, each on any thread
// (ChunkDecoder::process_or_plan, then decode_block): the file is open and its header and
// block offsets are read and validated; the blocks' bytes are not read yet.
struct BlockJob {
    ChunkFile file;
    BloscHeader h;
    std::vector<BlockExtent> extents;  // every block's place in the file
    std::vector<int32_t> blocks;       // the blocks to decode
    const Stitch* stitches = nullptr;
    std::size_t n = 0;
    bool whole = false;  // the only stitch takes the whole chunk: decode straight into it
    std::string key;     // the chunk's name in messages
    // The file held mapped (process_mappings()) and the chunk's first byte in it, or null:
    // blocks are then read with pread.
    MappingRef mapping;
    const uint8_t* mapped = nullptr;
    // Blocks not in the page cache are read by the I/O stage: reads[k] says where
    // blocks[k]'s bytes arrive (a ticket of `batch`, the block's offset in it, and the part
    // of the ticket that holds it: 0 for a read handed out whole, else the block's place in
    // the read, as a remote response streams in). Empty: the blocks are read from the
    // mapping, or with pread.
    struct BlockRead {
        std::size_t ticket = 0;
        std::size_t offset = 0;
        std::size_t part = 0;
    };
    ReadBatch* batch = nullptr;
    std::vector<BlockRead> reads;
    std::vector<std::size_t> tickets;  // every ticket of the job, released when it is done
    // A chunk object decoded while its first read (tickets[0]) streams in (plan_streamed):
    // the size its header states and the version its bytes came with, checked against the
    // object's once that read has ended (then its header is kept).
    bool streamed_first = false;
    std::size_t stated_size = 0;
    std::string stated_version;
};

constexpr std::size_t kNoTicket = static_cast<std::size_t>(-1);

// A chunk file opened by the I/O stage's first round (ChunkDecoder::open_ahead), before any
// chunk of the window is read: whether its first bytes were in the page cache and, when not,
// the read-ahead of what is read first is under way.
struct OpenedChunk {
    ChunkFile file;
    bool opened = false;  // false: process_or_plan opens the file itself
    bool cold = false;    // its first bytes had to come from the device
    // Cold chunks: the ticket (of the window's ReadBatch) of their first read: the header and
    // block offsets of a Blosc chunk read piecewise, or the whole chunk (`whole`). Its first
    // `head_bytes` bytes of the chunk arrive there.
    std::size_t head = kNoTicket;
    std::size_t head_bytes = 0;
    bool whole = false;
    // A remote chunk object whose size is not known before its first read (submit_first):
    // `file` names it; its size and version come with the ticket.
    bool first = false;
    // A remote Blosc chunk whose header and block offsets were kept from an earlier read:
    // no first read; `file` has the size and version they came with.
    std::shared_ptr<const ShardIndex> header;
};

class ChunkDecoder {
public:
    // `shards` is null for unsharded arrays. `cache` may be null or disabled; when enabled,
    // chunks are decoded whole and kept.
    // With `store`, chunks are objects of that remote store (`source` unused).
    ChunkDecoder(const ArraySpec& spec, const FileChunkSource& source, const ShardReader* shards,
                 ChunkCache* cache, std::shared_ptr<const ObjectSource> store = nullptr);

    // Reads chunk `coords` and writes every stitch (a missing chunk writes the fill value),
    // except for chunks that decode_block can decode block by block (zstd or lz4 Blosc chunk
    // files large enough to be read piecewise): those are opened and planned into `job` and
    // true is returned; the caller then runs decode_block for each of job.blocks, on any
    // threads, in any order. With `split_pool`, other Blosc chunks have their blocks decoded
    // in parallel on it (for reads that touch fewer chunks than there are threads).
    // Throws ChunkError / ChunkIoError naming the array and the chunk key.
    // `opened` is the chunk as open_ahead left it (its file moves into `job`); `batch` the
    // window's reads (its tickets), which must outlive `job`.
    bool process_or_plan(const int64_t* coords, const Stitch* stitches, std::size_t n,
                         OpenedChunk& opened, ReadBatch& batch, BlockJob& job,
                         ThreadPool* split_pool, const CancelFlags* cancel = nullptr) const;
    // The I/O stage's first round for one chunk: opens its file and checks, without waiting
    // for the device, whether its first bytes are in the page cache; when they are not, starts
    // reading what process_or_plan reads first: the whole chunk when it is read whole (kernel
    // read-ahead), else its header and block offsets (a ticket of `batch`; reading whole
    // chunks the stitches need most of measured slower: PROFILE.md). Leaves `opened`
    // unopened for arrays with a decoded-chunk cache (a cached chunk needs no file). Throws
    // ChunkIoError (EMFILE included) and ChunkError naming the chunk.
    void open_ahead(const int64_t* coords, OpenedChunk& opened, ReadBatch& batch) const;
    // For reads to come (CropReader::prefetch), without waiting for the device: starts
    // reading ahead what a read of these stitches will need that is not in the page cache.
    // Chunks read whole: the whole file. Chunks read piecewise: their header and block
    // offsets while those are not cached, else the needed blocks. Returns the bytes asked for
    // (0 when missing or cached). Waits only for a sharded array's index the first time it is
    // needed.
    std::size_t prefetch_chunk(const int64_t* coords, const Stitch* stitches, std::size_t n) const;
    // prefetch_chunk for a remote store, on a fetch-ahead thread (it waits for round trips):
    // fetches what a read of these stitches will ask the store for (the shard index, the
    // first read, then the needed blocks), and holds it in the store's PrefetchedBytes for
    // that read, within `budget` bytes (what it asks for is taken off). Keeps the chunk's
    // header as a read does. Throws what the fetches throw.
    void fetch_ahead_chunk(const int64_t* coords, const Stitch* stitches, std::size_t n,
                           std::atomic<std::size_t>& budget) const;
    // For prefetch of a sharded array: when the inner chunk's header is kept, the byte ranges
    // of its shard object (`key`) a read of these stitches will ask for (its needed blocks),
    // so that those of one shard can be fetched ahead merged; false when a first read must
    // come first (fetch_ahead_chunk then). Fetches the shard's index if not kept.
    bool kept_block_ranges(const int64_t* coords, const Stitch* stitches, std::size_t n,
                           std::string& key, std::vector<ByteRange>& ranges) const;
    const ObjectSource& store() const { return *store_; }
    // Reads (from the job's mapping, else with pread), validates and decodes job.blocks[k]
    // and writes it to the job's stitches.
    void decode_block(const BlockJob& job, std::size_t k) const;
    // After all of a job's blocks (on the thread that decoded the last one): throws ChunkError
    // if a mapped file changed size meanwhile (a truncation inside the last page reads as
    // zeros, without SIGBUS), then closes the file.
    void finish_job(BlockJob& job) const;

    // Benchmark support: reads the chunk (untimed), then returns the CPU seconds spent validating
    // and decoding exactly what a read would decode for these stitches (nothing is
    // stitched; a whole-chunk stitch may be decoded into its destination).
    double decode_seconds(const int64_t* coords, const Stitch* stitches, std::size_t n) const;

private:
    // The chunk's name in messages: its key, or the shard key and inner chunk.
    std::string label(const int64_t* coords) const;
    // The chunk's bytes as an open file range; closed when missing (fill value). A remote
    // chunk that is not in a shard is named only (size 0: its first read tells the size).
    ChunkFile open_chunk(const int64_t* coords) const;
    // The chunk read whole into `buf`; its size, or false when it is missing.
    bool read_whole(const int64_t* coords, ByteBuffer& buf, std::size_t& size) const;
    // process_or_plan's first step for a remote chunk with a first read: waits for it; the
    // missing chunk (fill value) or one that arrived whole is done here (false); otherwise
    // `opened.file` is the sized object and the read goes on piecewise (true).
    bool resolve_remote(const Stitch* stitches, std::size_t n, OpenedChunk& opened,
                        ReadBatch& batch) const;
    // Whether a remote chunk is better fetched whole in one round trip (by what fetches have
    // cost so far) than piecewise.
    bool whole_in_one_trip() const;
    // The kept header and block offsets of a remote chunk (its size and version with them),
    // or null; keep_remote_header keeps them after a read validated them.
    std::string remote_header_key(const ChunkFile& file) const;
    std::shared_ptr<const ShardIndex> remote_header(const ChunkFile& file) const;
    void keep_remote_header(const ChunkFile& file, const uint8_t* prefix, std::size_t len) const;
    // A remote Blosc chunk fetched whole (`bytes`, file.size() of them): its header is kept
    // too, so that a later read of other parts fetches only their blocks, in one round trip.
    void keep_header_of_whole(const ChunkFile& file, const uint8_t* bytes) const;
    // Validates and decodes a chunk held whole in memory and writes the stitches.
    void process_bytes(MutableBytes bytes, const Stitch* stitches, std::size_t n) const;

    struct LoadedChunk {
        // RawCopied: raw (memcpyed) bytes, already copied to the destinations.
        enum Kind { Compressed, RawCopied };
        Kind kind = Compressed;
        BloscHeader h;
        bool whole = false;                // the only stitch takes the whole chunk contiguously
        std::size_t needed = 0;            // blocks to decode (the worker's skip mask says which)
        MutableBytes bytes;                // the chunk file's bytes (worker scratch)
        std::vector<BlockExtent> extents;  // Compressed: where each block lies in `bytes`
        bool deferred = false;             // Compressed: the needed blocks are not read yet
    };
    // Reads a large Blosc chunk file: header, offset table and only the needed blocks, all
    // validated, into the worker's scratch. Blocks that decode_block decodes itself
    // (streams_direct) are not read (`deferred`). The header comes from `opened.head` when
    // open_ahead asked for it (the ticket is released); for a cold chunk the other ranges it
    // reads are read ahead first, all together.
    LoadedChunk load_needed(const ChunkFile& file, const Stitch* stitches, std::size_t n,
                            OpenedChunk& opened, ReadBatch& batch) const;
    void stitch_all(const uint8_t* chunk, const Stitch* stitches, std::size_t n) const;
    // Called from a catch block: rethrows a ChunkError / ChunkIoError with the array and the
    // chunk named in its message, anything else unchanged.
    [[noreturn]] void rethrow_in_context(const std::string& key) const;
    // Largest chunk file this array can have; larger files are refused unread.
    std::size_t max_file_bytes() const;
    void check_uncompressed_size(std::size_t size) const;
    // Validates a chunk held whole in `file` and decodes what the stitches need. Returns the
    // decoded chunk's base address (only needed blocks valid), or nullptr when it was decoded
    // straight into the only destination.
    const uint8_t* decode_needed(MutableBytes file, const Stitch* stitches, std::size_t n) const;
    // Decodes the planned blocks. Returns the decoded chunk's base address for the caller to
    // stitch from, or nullptr when nothing is left to do: decoded straight into the only
    // destination, or (zstd chunks, see streams_direct) decoded block by block with each block
    // copied to the destinations while it is in cache. With n == 0 it only decodes
    // (benchmarks; stitches[0] is still the destination when `whole`).
    const uint8_t* decode_planned(const BloscHeader& h, MutableBytes file,
                                  const std::vector<BlockExtent>& extents, const Stitch* stitches,
                                  std::size_t n, bool whole, std::size_t needed) const;
    // process_or_plan for chunks not split into blocks: the decoded-chunk cache, and codecs
    // other than Blosc.
    void process_whole(const int64_t* coords, const Stitch* stitches, std::size_t n,
                       OpenedChunk& opened) const;
    // Turns a loaded, deferred chunk into a block job: its needed blocks and where they are
    // read from: the mapping (when the mapping cache allows and they are in the page cache),
    // or reads queued on `batch` (cold).
    void make_block_job(LoadedChunk& c, ChunkFile file, const Stitch* stitches, std::size_t n,
                        std::string key, const OpenedChunk& opened, ReadBatch& batch,
                        BlockJob& job) const;
    // Queues the reads of the job's blocks on `batch`: in file order, adjacent blocks merged
    // into reads of up to kReadPiece bytes.
    void queue_block_reads(BlockJob& job, ReadBatch& batch) const;
    // A chunk object's first read, whole, still streaming in: once its header and block
    // offsets are in, plans the needed blocks into `job`, each handed out to the decoders as
    // its bytes arrive (true). False when the read ended first, or the chunk is not one to
    // decode block by block: the usual route (resolve_remote) then takes it whole.
    bool plan_streamed(const Stitch* stitches, std::size_t n, OpenedChunk& opened, ReadBatch& batch,
                       BlockJob& job, const std::string& key) const;
    // After a streamed first read ended: the object is the one its header described (size,
    // version), else ChunkError; its header is kept.
    void finish_streamed_first(const BlockJob& job) const;
    // Writes the stitches from an open chunk file read whole (or, uncompressed, through a
    // window): missing (fill value), small Blosc chunks, uncompressed and codec chains.
    void process_open(const ChunkFile& file, const Stitch* stitches, std::size_t n) const;
    // Decodes the needed blocks of a loaded (non-deferred) chunk in parallel on `pool`.
    void decode_split(const LoadedChunk& c, const Stitch* stitches, std::size_t n, ThreadPool& pool,
                      const CancelFlags* cancel) const;
    // Decodes a whole chunk file into a fresh buffer (for the cache).
    ChunkBytes decode_whole(MutableBytes file) const;

    const ArraySpec& spec_;
    const FileChunkSource& source_;
    const ShardReader* shards_;
    ChunkCache* cache_;
    std::shared_ptr<const ObjectSource> store_;
    std::size_t chunk_bytes_;
};

}  // namespace zarrcrop
