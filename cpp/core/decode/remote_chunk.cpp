// Remote chunk objects in the decode path: the Blosc header and block offsets kept from one
// read to the next (so a later read of the chunk asks only for its blocks), the first read's
// reply resolved into a chunk read whole or piecewise, and a chunk decoded while its first
// read still streams in (plan_streamed), checked once that read has ended.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "codec/blosc_decoder.hpp"
#include "decode/block_plan.hpp"
#include "decode/chunk_decoder.hpp"
#include "decode/read_parts.hpp"
#include "errors.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

bool ChunkDecoder::whole_in_one_trip() const {
    // One round trip for the whole chunk when moving all of it costs less than the round trip
    // that reading its header first would add.
    const FetchCosts c = store_->costs();
    return c.round_trip > 0 && c.bytes_per_second > 0 && c.object_size > 0 &&
           c.object_size / c.bytes_per_second < c.round_trip;
}

std::string ChunkDecoder::remote_header_key(const ChunkFile& file) const {
    // '\0' cannot be in a URL; 'h' keeps it apart from shard index keys.
    return file.path() + '\0' + 'h' + std::to_string(file.base());
}

std::shared_ptr<const ShardIndex> ChunkDecoder::remote_header(const ChunkFile& file) const {
    return process_shard_indexes().get_remote(remote_header_key(file));
}

void ChunkDecoder::keep_remote_header(const ChunkFile& file, const uint8_t* prefix,
                                      std::size_t len) const {
    ShardIndexCache& cache = process_shard_indexes();
    if (cache.limit() == 0 || file.version().empty()) return;  // no version: cannot check it
    auto entry = std::make_shared<ShardIndex>();
    entry->header.assign(prefix, prefix + len);
    entry->size = static_cast<off_t>(file.size());
    entry->version = file.version();
    cache.put(remote_header_key(file), std::move(entry));
}

void ChunkDecoder::keep_header_of_whole(const ChunkFile& file, const uint8_t* bytes) const {
    // Before decoding (which may rewrite header flags): the same check process_bytes makes.
    if (spec_.compressor != Compressor::Blosc || file.size() < kPartialReadMin) return;
    const BloscHeader h = validate_blosc_header(bytes, file.size(), chunk_bytes_);
    if (h.memcpyed()) return;
    const std::size_t prefix = blosc_prefix_bytes(h);
    if (prefix <= file.size()) keep_remote_header(file, bytes, prefix);
}

bool ChunkDecoder::resolve_remote(const Stitch* stitches, std::size_t n, OpenedChunk& opened,
                                  ReadBatch& batch) const {
    WorkerScratch& s = scratch();
    const uint8_t* head = batch.wait(opened.head);
    std::size_t have = opened.head_bytes;
    if (opened.first) {
        const ObjectRange got = batch.first_result(opened.head);
        if (!got.found) {
            batch.release(opened.head);
            opened.head = kNoTicket;
            for (std::size_t i = 0; i < n; ++i)
                fill_strided(stitches[i].dst, stitches[i].region, spec_.fill_value.data());
            return false;
        }
        if (got.object_size > max_file_bytes())
            throw ChunkError("chunk object " + opened.file.path() + " has " +
                             std::to_string(got.object_size) + " bytes, more than the " +
                             std::to_string(max_file_bytes()) + " a chunk of this array can have");
        if (got.offset != 0 || got.bytes > got.object_size)
            throw ChunkError("chunk object " + opened.file.path() +
                             ": the store answered another range than was asked for");
        opened.file = ChunkFile(store_, opened.file.key(), got.object_size, got.version);
        store_->note_chunk_size(got.object_size);
        have = got.bytes;
    }
    const ChunkFile& file = opened.file;
    const std::size_t size = file.size();
    if (have >= size || size < kPartialReadMin || spec_.compressor != Compressor::Blosc) {
        // Whole: in hand already, or small enough to fetch the rest at once.
        uint8_t* buf = s.file.get(std::max<std::size_t>(size, 1));
        std::memcpy(buf, head, std::min(have, size));
        batch.release(opened.head);
        opened.head = kNoTicket;
        if (have < size) file.read_at(have, size - have, buf + have);
        keep_header_of_whole(file, buf);
        process_bytes(MutableBytes(buf, size), stitches, n);
        return false;
    }
    opened.head_bytes = have;
    return true;
}

bool ChunkDecoder::plan_streamed(const Stitch* stitches, std::size_t n, OpenedChunk& opened,
                                 ReadBatch& batch, BlockJob& job, const std::string& key) const {
    const std::size_t t = opened.head;
    const ReadBatch::Streamed head = batch.wait_streamed(t, 16);
    if (head.done) return false;
    // The object's size is not known before its read ends, but a Blosc chunk's header says.
    const std::size_t size = blosc_stated_size(head.data);
    if (size < kPartialReadMin || size > max_file_bytes() || size > opened.head_bytes)
        return false;  // a small chunk, or a wrong one: the usual route reports it
    const BloscHeader h = validate_blosc_header(head.data, size, chunk_bytes_);
    if (h.memcpyed() || !streams_direct(h)) return false;
    const std::size_t prefix = blosc_prefix_bytes(h);
    const ReadBatch::Streamed table = batch.wait_streamed(t, prefix);
    if (table.done) return false;
    std::vector<BlockExtent> extents = blosc_block_extents(h, table.data, size);
    WorkerScratch& s = scratch();
    const bool whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
    plan_blocks(h, stitches, n, whole, s.skip);
    std::vector<int32_t> blocks;
    std::vector<std::size_t> ends;
    for (std::size_t b = 0; b < extents.size(); ++b)
        if (whole || !s.skip[b]) {
            blocks.push_back(static_cast<int32_t>(b));
            ends.push_back(extents[b].end);
        }
    if (blocks.empty()) return false;
    ends = distinct_ends(std::move(ends));
    std::vector<BlockJob::BlockRead> reads;
    for (const int32_t b : blocks) {
        const BlockExtent& e = extents[static_cast<std::size_t>(b)];
        reads.push_back(BlockJob::BlockRead{t, e.start, part_of(ends, e.end)});
    }
    // Held until the window decodes, outside the read budget: at most half of it per window
    // (more chunks take the usual route, their first read released once copied).
    if (!batch.claim_parts(t, std::move(ends), get_read_queue().budget_bytes / 2)) return false;
    job.blocks = std::move(blocks);
    job.reads = std::move(reads);
    job.file = ChunkFile(store_, opened.file.key(), size, table.version);
    job.h = h;
    job.extents = std::move(extents);
    job.stitches = stitches;
    job.n = n;
    job.whole = whole;
    job.key = key;
    job.batch = &batch;
    job.tickets = {t};
    job.streamed_first = true;
    job.stated_size = size;
    job.stated_version = table.version;
    opened.head = kNoTicket;  // the job's now
    return true;
}

void ChunkDecoder::finish_streamed_first(const BlockJob& job) const {
    const std::size_t t = job.tickets.front();
    const ObjectRange got = job.batch->first_result(t);
    const std::string& url = job.file.path();
    if (!got.found) throw ChunkError("chunk object " + url + " disappeared while it was read");
    if (!job.stated_version.empty() && !got.version.empty() && got.version != job.stated_version)
        throw StaleObject("chunk object " + url + " changed while it was read (version " +
                              job.stated_version + ", now " + got.version + "); read it again",
                          url);
    if (got.offset != 0 || got.object_size != job.stated_size)
        throw ChunkError("chunk object " + url + " has " + std::to_string(got.object_size) +
                         " bytes, its Blosc header says " + std::to_string(job.stated_size));
    if (got.bytes != got.object_size)
        throw ChunkError("chunk object " + url + ": the reply ended after " +
                         std::to_string(got.bytes) + " of its " + std::to_string(got.object_size) +
                         " bytes");
    store_->note_chunk_size(got.object_size);
    // Validated now: kept, so that its next read needs no first read.
    keep_remote_header(ChunkFile(store_, job.file.key(), got.object_size, got.version),
                       job.batch->wait(t), blosc_prefix_bytes(job.h));
}
}  // namespace zarrcrop
