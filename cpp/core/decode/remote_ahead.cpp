// Prefetch on an object store: what a read of a chunk will ask the store for (the shard
// index, the first read, the needed blocks), fetched on a fetch-ahead thread and held for
// that read (io/prefetched_bytes). The requests follow the read's own choices (open_ahead,
// resolve_remote, load_needed, queue_block_reads) so that the read finds them covered.
#include <algorithm>
#include <vector>

#include "decode/block_plan.hpp"
#include "decode/chunk_decoder.hpp"
#include "io/merge_runs.hpp"

namespace zarrcrop {

namespace {

// The needed ranges as a read asks for them: most of the chunk as one range, else runs of
// blocks merged over gaps, in pieces.
std::vector<ByteRange> remote_block_ranges(std::vector<ByteRange> ranges, std::size_t prefix,
                                           std::size_t size, bool all) {
    std::size_t needed = 0;
    for (const ByteRange& r : ranges) needed += r.end - r.start;
    if (all || needed * 5 >= (size - prefix) * 4) return {ByteRange{prefix, size}};
    std::sort(ranges.begin(), ranges.end(),
              [](const ByteRange& a, const ByteRange& b) { return a.start < b.start; });
    std::vector<ByteRange> merged;
    merge_runs(
        ranges.size(), [&](std::size_t k) { return ranges[k].start; },
        [&](std::size_t k) { return ranges[k].end; }, kRemoteMergeGap, kRemoteReadPiece,
        [](std::size_t, std::size_t) { return true; },
        [&](std::size_t, std::size_t, std::size_t lo, std::size_t hi) {
            merged.push_back(ByteRange{lo, hi});
        });
    return merged;
}

}  // namespace

void ChunkDecoder::fetch_ahead_chunk(const int64_t* coords, const Stitch* stitches, std::size_t n,
                                     std::atomic<std::size_t>& budget) const {
    const ChunkFile f = open_chunk(coords);  // a shard's index: fetched and kept
    if (!f.is_open()) return;
    const std::string& key = f.key();
    const std::size_t base = f.base();
    // Read whole: other codecs, and every chunk of an array with a decoded-chunk cache.
    const bool piecewise =
        spec_.compressor == Compressor::Blosc && (cache_ == nullptr || !cache_->enabled());
    std::size_t size = f.size();  // not in a shard: 0 until the first read tells
    std::string version = f.version();
    std::vector<uint8_t> head;
    std::size_t held_from = 0;  // the first read holds [0, held_from) for the read
    const std::shared_ptr<const ShardIndex> kept = piecewise ? remote_header(f) : nullptr;
    if (kept) {
        if (shards_ == nullptr) size = static_cast<std::size_t>(kept->size);
        version = kept->version;
        head = kept->header;
    } else {
        if (shards_ != nullptr && size == 0) return;  // missing shard or empty inner chunk
        std::size_t first = 0;
        if (shards_ == nullptr)
            first = !piecewise || whole_in_one_trip() ? max_file_bytes() : kRemoteFirstRead;
        else
            first = !piecewise || size < kPartialReadMin ? size : std::min(size, kRemoteFirstRead);
        const std::optional<ObjectRange> got = store_->fetch_ahead(key, base, first, &head, budget);
        if (!got || !got->found || got->offset != base) return;
        if (shards_ == nullptr) {
            size = got->object_size;
            version = got->version;
        }
        held_from = head.size();
        if (!piecewise || size < kPartialReadMin) {
            // Read whole: the rest, when the first read did not hold all of it.
            if (held_from < size && size <= max_file_bytes())
                store_->fetch_ahead(key, base + held_from, size - held_from, nullptr, budget);
            return;
        }
        if (held_from >= size) {  // all of it in hand: kept as a read of it keeps it
            if (size <= max_file_bytes())
                keep_header_of_whole(ChunkFile(store_, key, size, version, base), head.data());
            return;
        }
    }
    if (size > max_file_bytes() || head.size() < 16) return;  // the read reports it
    const BloscHeader h = validate_blosc_header(head.data(), size, chunk_bytes_);
    if (h.memcpyed()) {  // raw bytes: the read copies what it needs of the rest
        if (head.size() < size)
            store_->fetch_ahead(key, base + head.size(), size - head.size(), nullptr, budget);
        return;
    }
    const std::size_t prefix = blosc_prefix_bytes(h);
    if (prefix > head.size()) {
        std::vector<uint8_t> more;
        const std::size_t have = head.size();
        const std::optional<ObjectRange> got =
            store_->fetch_ahead(key, base + have, prefix - have, &more, budget);
        if (!got || more.size() != prefix - have) return;
        head.insert(head.end(), more.begin(), more.end());
        held_from = prefix;
    }
    const std::vector<BlockExtent> extents = blosc_block_extents(h, head.data(), size);
    // Kept as a read keeps it: the read then asks only for the blocks.
    if (!kept) keep_remote_header(ChunkFile(store_, key, size, version, base), head.data(), prefix);
    std::vector<uint8_t> skip;
    const bool whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
    const std::size_t needed = plan_blocks(h, stitches, n, whole, skip);
    const bool all = needed == static_cast<std::size_t>(h.nblocks());
    for (ByteRange r : remote_block_ranges(needed_ranges(extents, skip, all), prefix, size, all)) {
        r.start = std::max(r.start, held_from);
        if (r.start >= r.end) continue;
        if (!store_->fetch_ahead(key, base + r.start, r.end - r.start, nullptr, budget)) return;
    }
}

bool ChunkDecoder::kept_block_ranges(const int64_t* coords, const Stitch* stitches, std::size_t n,
                                     std::string& key, std::vector<ByteRange>& ranges) const {
    ranges.clear();
    if (shards_ == nullptr || spec_.compressor != Compressor::Blosc ||
        (cache_ != nullptr && cache_->enabled()))
        return false;
    const ChunkFile f = open_chunk(coords);  // the shard's index: fetched and kept
    if (!f.is_open()) return true;           // missing shard or empty inner chunk: nothing
    const std::shared_ptr<const ShardIndex> kept = remote_header(f);
    const std::size_t size = f.size();
    if (!kept || kept->header.size() < 16 || size > max_file_bytes()) return false;
    const BloscHeader h = validate_blosc_header(kept->header.data(), size, chunk_bytes_);
    const std::size_t prefix = blosc_prefix_bytes(h);
    if (h.memcpyed() || kept->header.size() < prefix) return false;
    const std::vector<BlockExtent> extents = blosc_block_extents(h, kept->header.data(), size);
    std::vector<uint8_t> skip;
    const bool whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
    const bool all =
        plan_blocks(h, stitches, n, whole, skip) == static_cast<std::size_t>(h.nblocks());
    key = f.key();
    for (ByteRange r : remote_block_ranges(needed_ranges(extents, skip, all), prefix, size, all)) {
        r.start += f.base();
        r.end += f.base();
        ranges.push_back(r);
    }
    return true;
}

}  // namespace zarrcrop
