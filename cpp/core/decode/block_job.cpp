// Block jobs: a Blosc chunk whose needed blocks are decoded one at a time on any thread
// (ChunkDecoder::process_or_plan plans the job): the blocks' reads queued with the I/O stage,
// each block decoded from its read, the mapping or pread, and the job's reads checked and
// released at its end. Also decode_split, the needed blocks of one loaded chunk spread over the
// pool.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "codec/blosc_decoder.hpp"
#include "decode/block_plan.hpp"
#include "decode/chunk_decoder.hpp"
#include "decode/read_parts.hpp"
#include "errors.hpp"
#include "io/merge_runs.hpp"
#include "runtime/thread_pool.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

namespace {

// A mapped read faulted (SIGBUS): the file shrank, or the device failed to deliver a page.
[[noreturn]] void throw_shrank(const ChunkFile& file) {
    struct stat st {};
    if (::fstat(file.fd(), &st) == 0 && static_cast<std::size_t>(st.st_size) == file.file_size())
        throw ChunkIoError("cannot read chunk file " + file.path() + ": " + std::strerror(EIO) +
                               " (a mapped page could not be read)",
                           EIO);
    throw ChunkError("chunk file " + file.path() + " changed size while it was read (was " +
                     std::to_string(file.file_size()) + " bytes)");
}

}  // namespace
void ChunkDecoder::make_block_job(LoadedChunk& c, ChunkFile file, const Stitch* stitches,
                                  std::size_t n, std::string key, const OpenedChunk& opened,
                                  ReadBatch& batch, BlockJob& job) const {
    WorkerScratch& s = scratch();
    const auto nblocks = static_cast<std::size_t>(c.h.nblocks());
    job.blocks.clear();
    for (std::size_t b = 0; b < nblocks; ++b)
        if (c.whole || !s.skip[b]) job.blocks.push_back(static_cast<int32_t>(b));
    job.file = std::move(file);
    job.h = c.h;
    job.extents = std::move(c.extents);
    job.stitches = stitches;
    job.n = n;
    job.whole = c.whole;
    job.key = std::move(key);
    if (job.blocks.empty()) return;
    if (!opened.cold) {
        job.mapping = process_mappings().get(job.file);
        if (job.mapping && job.file.base() + job.file.size() <= job.mapping->size())
            job.mapped = job.mapping->data() + job.file.base();
        else
            job.mapping.reset();
        // A warm header says little about the blocks (an earlier crop may have read only
        // some): a mapped chunk's pages are checked, one syscall over the needed span.
        if (job.mapped == nullptr) return;  // pread, block by block
        std::size_t lo = SIZE_MAX;
        std::size_t hi = 0;
        for (const int32_t b : job.blocks) {
            lo = std::min<std::size_t>(lo, job.extents[static_cast<std::size_t>(b)].start);
            hi = std::max<std::size_t>(hi, job.extents[static_cast<std::size_t>(b)].end);
        }
        if (mapped_residency(job.mapping->data(), job.mapped, lo, hi - lo) != Residency::NotCached)
            return;
        job.mapping.reset();
        job.mapped = nullptr;
    }
    queue_block_reads(job, batch);
}

void ChunkDecoder::queue_block_reads(BlockJob& job, ReadBatch& batch) const {
    // Blocks in file order; runs of them become reads.
    std::vector<std::size_t> order(job.blocks.size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
    const auto extent = [&](std::size_t k) -> const BlockExtent& {
        return job.extents[static_cast<std::size_t>(job.blocks[k])];
    };
    std::sort(order.begin(), order.end(),
              [&](std::size_t x, std::size_t y) { return extent(x).start < extent(y).start; });
    job.batch = &batch;
    job.reads.assign(job.blocks.size(), BlockJob::BlockRead{});
    const bool remote = job.file.remote();
    const std::size_t piece = remote ? kRemoteReadPiece : kReadPiece;
    const std::size_t merge_gap = remote ? kRemoteMergeGap : kReadMergeGap;
    merge_runs(
        order.size(), [&](std::size_t k) { return extent(order[k]).start; },
        [&](std::size_t k) { return extent(order[k]).end; }, merge_gap, piece,
        [](std::size_t, std::size_t) { return true; },
        [&](std::size_t i, std::size_t j, std::size_t lo, std::size_t hi) {
            // A remote response streams in: each block is a part, decoded once its bytes are in.
            std::vector<std::size_t> part_ends;
            if (remote)
                for (std::size_t k = i; k < j; ++k) part_ends.push_back(extent(order[k]).end - lo);
            part_ends = distinct_ends(std::move(part_ends));
            const std::size_t ticket =
                batch.submit(job.file, lo, hi - lo, /*claimable=*/true, part_ends);
            job.tickets.push_back(ticket);
            for (std::size_t k = i; k < j; ++k) {
                const BlockExtent& e = extent(order[k]);
                job.reads[order[k]] =
                    BlockJob::BlockRead{ticket, e.start - lo, part_of(part_ends, e.end - lo)};
            }
        });
}

void ChunkDecoder::decode_block(const BlockJob& job, std::size_t k) const {
    const int32_t b = job.blocks[k];
    const BlockExtent& e = job.extents[static_cast<std::size_t>(b)];
    const std::size_t len = e.end - e.start;
    WorkerScratch& s = scratch();
    try {
        if (!job.reads.empty()) {
            const BlockJob::BlockRead& r = job.reads[k];
            finish_block(job.h, job.batch->wait_bytes(r.ticket, r.offset + len) + r.offset, len, b,
                         job.stitches, job.n, job.whole);
            return;
        }
        if (job.mapped != nullptr) {
            // Straight from the page cache: no copy. decode_block_streams checks every size
            // where it uses it, as the file may change under the mapping.
            try {
                const MappedReadGuard guard(*job.mapping);
                finish_block(job.h, job.mapped + e.start, len, b, job.stitches, job.n, job.whole);
            } catch (const ChunkError&) {
                if (!job.mapping->damaged()) throw;
            }
            if (job.mapping->damaged()) throw_shrank(job.file);
            return;
        }
        uint8_t* compressed = s.compressed.get(len);
        job.file.read_at(e.start, len, compressed);
        finish_block(job.h, compressed, len, b, job.stitches, job.n, job.whole);
    } catch (...) {
        rethrow_in_context(job.key);
    }
}

void ChunkDecoder::finish_job(BlockJob& job) const {
    // A file truncated inside its last mapped page reads zeros there without SIGBUS: the
    // size check after the last block catches it.
    if (job.mapping && !mapping_intact(*job.mapping, job.file.fd())) {
        try {
            throw_shrank(job.file);
        } catch (...) {
            rethrow_in_context(job.key);
        }
    }
    // Blocks decoded from a response still streaming in: the read succeeds only if the whole
    // response did (its length and version are checked at its end).
    try {
        for (const std::size_t t : job.tickets) job.batch->wait(t);
        if (job.streamed_first) finish_streamed_first(job);
    } catch (...) {
        rethrow_in_context(job.key);
    }
    for (const std::size_t t : job.tickets) job.batch->release(t);
    job.file = ChunkFile();
}

void ChunkDecoder::decode_split(const LoadedChunk& c, const Stitch* stitches, std::size_t n,
                                ThreadPool& pool, const CancelFlags* cancel) const {
    // Decode the needed blocks on the whole pool. This thread's scratch holds the chunk
    // (read-only for the workers) and receives their disjoint blocks; it waits meanwhile.
    WorkerScratch& s = scratch();
    const BloscHeader h = c.h;
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    std::vector<int32_t> blocks;
    for (std::size_t b = 0; b < nblocks; ++b)
        if (!s.skip[b]) blocks.push_back(static_cast<int32_t>(b));
    uint8_t* final_dst = c.whole ? stitches[0].dst : s.decoded.get(chunk_bytes_);
    const bool own = own_unshuffle(h);
    uint8_t* target = final_dst;
    if (own) {
        blosc_clear_bitshuffle(c.bytes.data(), h);
        target = s.shuffled.get(chunk_bytes_);
    }
    const uint8_t* src = c.bytes.data();
    const std::size_t size = c.bytes.size();
    const std::function<void(std::size_t)> task = [&](std::size_t i) {
        WorkerScratch& w = scratch();  // the executing thread's own context and mask
        const int32_t b = blocks[i];
        w.block_mask.assign(nblocks, 1);
        w.block_mask[static_cast<std::size_t>(b)] = 0;
        w.blosc().decompress_blocks(h, src, size, target, chunk_bytes_, w.block_mask);
        if (own) unshuffle_block(h, b, target, final_dst);
    };
    pool.parallel_for(blocks.size(), task, cancel);
    if (!c.whole) stitch_all(final_dst, stitches, n);
}
}  // namespace zarrcrop
