#include "decode/chunk_decoder.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "codec/blosc_decoder.hpp"
#include "decode/block_plan.hpp"
#include "decode/codec_chain.hpp"
#include "decode/raw_window.hpp"
#include "errors.hpp"
#include "io/merge_runs.hpp"
#include "runtime/thread_pool.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

ChunkDecoder::ChunkDecoder(const ArraySpec& spec, const FileChunkSource& source,
                           const ShardReader* shards, ChunkCache* cache,
                           std::shared_ptr<const ObjectSource> store)
    : spec_(spec),
      source_(source),
      shards_(shards),
      cache_(cache),
      store_(std::move(store)),
      chunk_bytes_(spec.chunk_nbytes()) {}

std::string ChunkDecoder::label(const int64_t* coords) const {
    return shards_ != nullptr ? shards_->label(coords)
                              : chunk_key(spec_.keys, coords, spec_.ndim());
}

ChunkFile ChunkDecoder::open_chunk(const int64_t* coords) const {
    if (shards_ != nullptr) return shards_->open(coords, max_file_bytes());
    const std::string key = chunk_key(spec_.keys, coords, spec_.ndim());
    if (store_) return ChunkFile(store_, key, 0, "");
    return source_.open(key, max_file_bytes());
}

bool ChunkDecoder::read_whole(const int64_t* coords, ByteBuffer& buf, std::size_t& size) const {
    const ChunkFile file = open_chunk(coords);
    if (!file.is_open()) return false;
    if (file.remote() && shards_ == nullptr) {
        // Size unknown: ask for as much as a chunk of this array can have.
        const std::size_t most = max_file_bytes();
        const ObjectRange got = store_->fetch(file.key(), 0, most, false, buf.get(most));
        if (!got.found) return false;
        if (got.object_size > most)
            throw ChunkError("chunk object " + file.path() + " has " +
                             std::to_string(got.object_size) + " bytes, more than the " +
                             std::to_string(most) + " a chunk of this array can have");
        if (got.offset != 0 || got.bytes != got.object_size)
            throw ChunkError("chunk object " + file.path() + " shrank while it was read");
        size = got.bytes;
        return true;
    }
    size = file.size();
    file.read_at(0, size, buf.get(std::max<std::size_t>(size, 1)));
    return true;
}

void ChunkDecoder::process_whole(const int64_t* coords, const Stitch* stitches, std::size_t n,
                                 OpenedChunk& opened) const {
    const std::string key = label(coords);
    WorkerScratch& s = scratch();
    const bool caching = cache_ != nullptr && cache_->enabled();
    try {
        if (!caching && store_ && shards_ == nullptr) {
            std::size_t size = 0;
            if (!read_whole(coords, s.file, size)) {
                for (std::size_t i = 0; i < n; ++i)
                    fill_strided(stitches[i].dst, stitches[i].region, spec_.fill_value.data());
                return;
            }
            process_bytes(MutableBytes(s.file.data(), size), stitches, n);
            return;
        }
        if (!caching) {
            process_open(opened.opened ? std::move(opened.file) : open_chunk(coords), stitches, n);
            return;
        }
        ChunkBytes cached = cache_->get(key);
        if (!cached) {
            std::size_t size = 0;
            if (!read_whole(coords, s.file, size)) {
                for (std::size_t i = 0; i < n; ++i)
                    fill_strided(stitches[i].dst, stitches[i].region, spec_.fill_value.data());
                return;
            }
            cached = decode_whole(MutableBytes(s.file.data(), size));
            cache_->put(key, cached);
        }
        stitch_all(cached->data(), stitches, n);
    } catch (...) {
        rethrow_in_context(key);
    }
}

void ChunkDecoder::process_open(const ChunkFile& file, const Stitch* stitches,
                                std::size_t n) const {
    WorkerScratch& s = scratch();
    if (!file.is_open()) {
        for (std::size_t i = 0; i < n; ++i)
            fill_strided(stitches[i].dst, stitches[i].region, spec_.fill_value.data());
        return;
    }
    if (spec_.compressor == Compressor::None) {
        check_uncompressed_size(file.size());
        stream_raw(file, 0, chunk_bytes_, stitches, n);
        return;
    }
    uint8_t* bytes = s.file.get(file.size());
    file.read_at(0, file.size(), bytes);
    process_bytes(MutableBytes(bytes, file.size()), stitches, n);
}

void ChunkDecoder::process_bytes(MutableBytes bytes, const Stitch* stitches, std::size_t n) const {
    if (spec_.compressor == Compressor::None) {
        check_uncompressed_size(bytes.size());
        stitch_all(bytes.data(), stitches, n);
        return;
    }
    const uint8_t* base = decode_needed(bytes, stitches, n);
    if (base != nullptr) stitch_all(base, stitches, n);
}

void ChunkDecoder::rethrow_in_context(const std::string& key) const {
    const std::string where = "array '" + spec_.name + "', chunk '" + key + "': ";
    try {
        throw;
    } catch (const StaleObject& e) {
        // The object changed: nothing kept about it may be used again.
        if (shards_ != nullptr) shards_->forget(e.url(), max_file_bytes());
        process_shard_indexes().erase_prefix(e.url() + '\0' + 'h');
        throw ChunkError(where + e.what());
    } catch (const ChunkError& e) {
        throw ChunkError(where + e.what());
    } catch (const ChunkIoError& e) {
        throw ChunkIoError(where + e.what(), e.error_number());
    }  // anything else propagates unchanged
}

void ChunkDecoder::stitch_all(const uint8_t* chunk, const Stitch* stitches, std::size_t n) const {
    for (std::size_t i = 0; i < n; ++i)
        copy_strided(chunk + stitches[i].src_offset, stitches[i].dst, stitches[i].region);
}

std::size_t ChunkDecoder::max_file_bytes() const {
    switch (spec_.compressor) {
        case Compressor::None:
            return chunk_bytes_;
        case Compressor::Blosc:
            return chunk_bytes_ + 16;
        case Compressor::Chain:
            break;
    }
    // zstd frames of incompressible data are slightly larger than the data; stay generous but
    // bounded so that a huge unrelated file is refused before it is read.
    return 2 * chunk_bytes_ + 65536;
}

ChunkBytes ChunkDecoder::decode_whole(MutableBytes file) const {
    auto out = std::make_shared<std::vector<uint8_t>>(chunk_bytes_);
    if (spec_.compressor == Compressor::Chain) {
        std::memcpy(out->data(),
                    decode_chain(spec_, chunk_bytes_, file, SIZE_MAX, max_file_bytes()),
                    chunk_bytes_);
        return out;
    }
    if (spec_.compressor == Compressor::None) {
        check_uncompressed_size(file.size());
        std::memcpy(out->data(), file.data(), chunk_bytes_);
        return out;
    }
    const BloscHeader h = validate_blosc_chunk(file.data(), file.size(), chunk_bytes_);
    if (h.memcpyed())
        std::memcpy(out->data(), file.data() + 16, chunk_bytes_);
    else
        decode_blocks(h, file, out->data(), chunk_bytes_, nullptr);
    return out;
}

void ChunkDecoder::check_uncompressed_size(std::size_t size) const {
    if (size != chunk_bytes_)
        throw ChunkError("uncompressed chunk has " + std::to_string(size) +
                         " bytes, the chunk shape needs " + std::to_string(chunk_bytes_));
}

const uint8_t* ChunkDecoder::decode_planned(const BloscHeader& h, MutableBytes file,
                                            const std::vector<BlockExtent>& extents,
                                            const Stitch* stitches, std::size_t n, bool whole,
                                            std::size_t needed) const {
    WorkerScratch& s = scratch();
    if (streams_direct(h)) {
        // Block by block, each on to its destinations while in cache: no chunk-sized
        // intermediate.
        const int64_t nblocks = h.nblocks();
        for (int64_t b = 0; b < nblocks; ++b) {
            if (!whole && s.skip[static_cast<std::size_t>(b)]) continue;
            const BlockExtent& e = extents[static_cast<std::size_t>(b)];
            finish_block(h, file.data() + e.start, e.end - e.start, b, stitches, n, whole);
        }
        return nullptr;
    }
    if (whole) {
        // The destination holds the whole chunk as one run: decode straight into it.
        decode_blocks(h, file, stitches[0].dst, chunk_bytes_, nullptr);
        return nullptr;
    }
    const bool all = needed == static_cast<std::size_t>(h.nblocks());
    uint8_t* decoded = s.decoded.get(chunk_bytes_);
    decode_blocks(h, file, decoded, chunk_bytes_, all ? nullptr : &s.skip);
    return decoded;
}

const uint8_t* ChunkDecoder::decode_needed(MutableBytes file, const Stitch* stitches,
                                           std::size_t n) const {
    if (spec_.compressor == Compressor::Chain)
        return decode_chain(spec_, chunk_bytes_, file, needed_end(stitches, n, spec_.itemsize),
                            max_file_bytes());
    if (spec_.compressor == Compressor::None) {
        check_uncompressed_size(file.size());
        return file.data();
    }
    const BloscHeader h = validate_blosc_header(file.data(), file.size(), chunk_bytes_);
    // Incompressible data is stored raw after the header: stitching copies only what is needed.
    if (h.memcpyed()) return file.data() + 16;
    const std::vector<BlockExtent> extents = blosc_block_extents(h, file.data(), file.size());
    validate_blosc_streams(h, file.data(), extents, nullptr);
    const bool whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
    const std::size_t needed = plan_blocks(h, stitches, n, whole, scratch().skip);
    return decode_planned(h, file, extents, stitches, n, whole, needed);
}

ChunkDecoder::LoadedChunk ChunkDecoder::load_needed(const ChunkFile& file, const Stitch* stitches,
                                                    std::size_t n, OpenedChunk& opened,
                                                    ReadBatch& batch) const {
    WorkerScratch& s = scratch();
    const std::size_t size = file.size();
    const bool cold = opened.cold;
    uint8_t* buf = s.file.get(size);
    std::size_t have = 16;  // bytes of the file in buf
    if (opened.header) {
        have = std::min(size, opened.header->header.size());
        std::memcpy(buf, opened.header->header.data(), have);
    } else if (opened.head != kNoTicket) {
        have = std::min(size, opened.head_bytes);
        std::memcpy(buf, batch.wait(opened.head), have);
        batch.release(opened.head);
        opened.head = kNoTicket;
    } else {
        file.read_at(0, 16, buf);  // size >= kPartialReadMin > 16
    }
    LoadedChunk c;
    c.bytes = MutableBytes(buf, size);
    c.h = validate_blosc_header(buf, size, chunk_bytes_);
    c.whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
    const BloscHeader& h = c.h;
    const auto nblocks = static_cast<std::size_t>(h.nblocks());

    if (h.memcpyed()) {
        if (c.whole) {
            file.read_at(16, chunk_bytes_, stitches[0].dst);
            c.kind = LoadedChunk::RawCopied;
            return c;
        }
        // Raw bytes need no decoding: read the needed pages through a window and copy.
        stream_raw(file, 16, chunk_bytes_, stitches, n);
        c.kind = LoadedChunk::RawCopied;
        return c;
    }

    const std::size_t prefix = blosc_prefix_bytes(h);
    if (prefix > have) file.read_at(have, prefix - have, buf + have);
    c.extents = blosc_block_extents(h, buf, size);
    // A remote chunk's validated header: kept, so that its next read needs no round trip.
    if (file.remote() && !opened.header) keep_remote_header(file, buf, prefix);
    const std::vector<BlockExtent>& extents = c.extents;
    c.needed = plan_blocks(h, stitches, n, c.whole, s.skip);
    c.kind = LoadedChunk::Compressed;
    if (streams_direct(h)) {
        c.deferred = true;
        return c;
    }
    std::size_t needed_bytes = 0;
    for (std::size_t b = 0; b < nblocks; ++b)
        if (!s.skip[b]) needed_bytes += extents[b].end - extents[b].start;
    const bool all = c.needed == nblocks;
    if (all || needed_bytes * 5 >= (size - prefix) * 4) {
        if (cold) read_ahead(file, {ByteRange{prefix, size}});
        file.read_at(prefix, size - prefix, buf + prefix);
    } else {
        // Needed blocks in file order, adjacent ones merged into one read.
        if (cold) read_ahead(file, needed_ranges(extents, s.skip, false));
        std::vector<BlockExtent> ranges;
        for (std::size_t b = 0; b < nblocks; ++b)
            if (!s.skip[b]) ranges.push_back(extents[b]);
        std::sort(ranges.begin(), ranges.end(),
                  [](const BlockExtent& x, const BlockExtent& y) { return x.start < y.start; });
        for (std::size_t i = 0; i < ranges.size();) {
            std::size_t j = i;
            while (j + 1 < ranges.size() && ranges[j + 1].start == ranges[j].end) ++j;
            file.read_at(ranges[i].start, ranges[j].end - ranges[i].start, buf + ranges[i].start);
            i = j + 1;
        }
    }
    validate_blosc_streams(h, buf, extents, all ? nullptr : &s.skip);
    c.kind = LoadedChunk::Compressed;
    return c;
}

void ChunkDecoder::open_ahead(const int64_t* coords, OpenedChunk& opened, ReadBatch& batch) const {
    if (cache_ != nullptr && cache_->enabled()) return;
    try {
        opened.file = open_chunk(coords);
        opened.opened = true;
        const ChunkFile& f = opened.file;
        if (f.remote()) {
            // Nothing of a remote store is cached: every chunk's first read starts now, all of
            // them together. Blosc chunks: a first piece (header, block offsets, often the
            // whole chunk); others: whole.
            opened.cold = true;
            const bool piecewise = spec_.compressor == Compressor::Blosc;
            // A header kept from an earlier read: no first read; the blocks are asked for as
            // soon as the plan knows them.
            if (piecewise && (opened.header = remote_header(f))) {
                // A chunk object's size is its file's; an inner chunk's, its shard's slice.
                const std::size_t size =
                    shards_ != nullptr ? f.size() : static_cast<std::size_t>(opened.header->size);
                opened.file = ChunkFile(store_, f.key(), size, opened.header->version, f.base());
                return;
            }
            if (shards_ == nullptr) {
                opened.first = true;
                opened.whole = !piecewise || whole_in_one_trip();
                opened.head_bytes = opened.whole ? max_file_bytes() : kRemoteFirstRead;
                opened.head = batch.submit_first(f, opened.head_bytes);
                return;
            }
            if (f.size() == 0) return;  // missing shard or empty inner chunk
            opened.whole = !piecewise || f.size() < kPartialReadMin;
            opened.head_bytes = opened.whole ? f.size() : std::min(f.size(), kRemoteFirstRead);
            opened.head = batch.submit(f, 0, opened.head_bytes);
            return;
        }
        if (!f.is_open() || f.size() == 0) return;
        uint8_t head[16];
        Residency r = read_if_cached(f, 0, std::min(f.size(), sizeof head), head);
        if (r == Residency::Unknown) {
            // The file system cannot say without waiting (RWF_NOWAIT unsupported: FUSE, NFS,
            // old kernels): the mapping's page tables can (mincore).
            const MappingRef m = process_mappings().get(f);
            if (m && f.base() + f.size() <= m->size())
                r = mapped_residency(m->data(), m->data() + f.base(), 0,
                                     std::min(f.size(), sizeof head));
        }
        if (r != Residency::NotCached) return;
        opened.cold = true;
        count_cold_chunk();
        // Raw chunks are streamed in order (the kernel's own read-ahead serves that).
        if (spec_.compressor == Compressor::None) return;
        if (spec_.compressor != Compressor::Blosc || f.size() < kPartialReadMin) {
            read_ahead(f, {ByteRange{0, f.size()}});  // read whole
            return;
        }
        // Read piecewise, by the I/O stage: no kernel read-ahead around the pieces (it would
        // read blocks the stitches do not need).
        (void)::posix_fadvise(f.fd(), 0, 0, POSIX_FADV_RANDOM);
        opened.head_bytes = std::min(f.size(), kHeadRead);
        opened.head = batch.submit(f, 0, opened.head_bytes);
    } catch (...) {
        rethrow_in_context(label(coords));
    }
}

std::size_t ChunkDecoder::prefetch_chunk(const int64_t* coords, const Stitch* stitches,
                                         std::size_t n) const {
    try {
        if (store_) return 0;  // remote stores: nothing to ask the kernel for
        const ChunkFile f = open_chunk(coords);
        if (!f.is_open() || f.size() == 0) return 0;
        uint8_t head[16];
        const std::size_t probe = std::min(f.size(), sizeof head);
        const bool head_cached = read_if_cached(f, 0, probe, head) == Residency::Cached;
        const auto ask = [&](std::vector<ByteRange> ranges) {
            std::size_t bytes = 0;
            for (const ByteRange& r : ranges) bytes += r.end - r.start;
            read_ahead(f, std::move(ranges));
            return bytes;
        };
        // Chunks read whole: the whole file, unless its first bytes are cached already.
        if (spec_.compressor != Compressor::Blosc || f.size() < kPartialReadMin)
            return head_cached ? 0 : ask({ByteRange{0, f.size()}});
        // Read piecewise: the header and block offsets first (a read to come then needs no
        // round trip for them); once they are cached, the blocks the stitches need.
        if (!head_cached) return ask({ByteRange{0, std::min(f.size(), kHeadRead)}});
        const BloscHeader h = validate_blosc_header(head, f.size(), chunk_bytes_);
        if (h.memcpyed()) return 0;  // raw bytes are streamed in order (kernel read-ahead)
        const std::size_t prefix = blosc_prefix_bytes(h);
        WorkerScratch& s = scratch();
        uint8_t* buf = s.file.get(prefix);
        if (read_if_cached(f, 0, prefix, buf) != Residency::Cached)
            return ask({ByteRange{0, prefix}});
        const std::vector<BlockExtent> extents = blosc_block_extents(h, buf, f.size());
        const bool whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
        const std::size_t needed = plan_blocks(h, stitches, n, whole, s.skip);
        std::vector<ByteRange> ranges =
            needed_ranges(extents, s.skip, needed == static_cast<std::size_t>(h.nblocks()));
        if (ranges.empty()) return 0;
        // Nothing to ask for when the needed span is resident already (a warm chunk).
        const MappingRef m = process_mappings().get(f);
        if (m && f.base() + f.size() <= m->size() &&
            mapped_residency(m->data(), m->data() + f.base(), ranges.front().start,
                             ranges.back().end - ranges.front().start) == Residency::Cached)
            return 0;
        return ask(std::move(ranges));
    } catch (...) {
        rethrow_in_context(label(coords));
    }
}

// The routes, chosen once per chunk, from the array's codecs, the file's size and its header:
// - not Blosc, or a decoded-chunk cache: process_whole (cache, codec chain, raw window);
// - missing or small: process_open (fill value, or the file read whole and decoded);
// - Blosc memcpyed: the needed raw bytes copied (load_needed, raw window);
// - Blosc zstd/lz4 streams: a block job, its blocks decoded as pool tasks (decode_block);
// - other Blosc codecs: the needed blocks read, then decoded here (decode_planned), or spread
//   over the pool when the read has fewer chunks than threads (decode_split).
bool ChunkDecoder::process_or_plan(const int64_t* coords, const Stitch* stitches, std::size_t n,
                                   OpenedChunk& opened, ReadBatch& batch, BlockJob& job,
                                   ThreadPool* split_pool, const CancelFlags* cancel) const {
    std::string key = label(coords);
    if (opened.head != kNoTicket && opened.file.remote()) {
        try {
            if (opened.first && opened.whole && spec_.compressor == Compressor::Blosc &&
                (cache_ == nullptr || !cache_->enabled()) &&
                plan_streamed(stitches, n, opened, batch, job, key))
                return true;
            if (!resolve_remote(stitches, n, opened, batch)) return false;
        } catch (...) {
            rethrow_in_context(key);
        }
    }
    if (spec_.compressor != Compressor::Blosc || (cache_ != nullptr && cache_->enabled())) {
        process_whole(coords, stitches, n, opened);
        return false;
    }
    try {
        ChunkFile file = opened.opened ? std::move(opened.file) : open_chunk(coords);
        if (!file.is_open() || file.size() < kPartialReadMin) {
            process_open(file, stitches, n);  // missing or small: read whole, nothing to spread
            return false;
        }
        LoadedChunk c = load_needed(file, stitches, n, opened, batch);
        if (c.kind == LoadedChunk::RawCopied) return false;
        if (c.deferred) {
            make_block_job(c, std::move(file), stitches, n, std::move(key), opened, batch, job);
            return true;
        }
        if (split_pool != nullptr && c.needed >= 2) {
            decode_split(c, stitches, n, *split_pool, cancel);
            return false;
        }
        const uint8_t* base =
            decode_planned(c.h, c.bytes, c.extents, stitches, n, c.whole, c.needed);
        if (base != nullptr) stitch_all(base, stitches, n);
        return false;
    } catch (...) {
        rethrow_in_context(key);
    }
}

}  // namespace zarrcrop
