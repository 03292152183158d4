#include "decode/chunk_decoder.hpp"

#include <algorithm>
#include <ctime>
#include <cstring>
#include <memory>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <emmintrin.h>
#endif

#include "codec/bitshuffle.hpp"
#include "codec/blosc_decoder.hpp"
#include "codec/codecs.hpp"
#include "errors.hpp"
#include "runtime/thread_pool.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

namespace {

// Compressed chunks smaller than this are read with one pread; larger ones read only the
// blocks that the destinations need.
constexpr std::size_t kPartialReadMin = 64 * 1024;
// What a cold chunk read piecewise has read ahead before its header is parsed: the header and
// the block offsets of any chunk with up to about 8,000 blocks.
constexpr std::size_t kPrefixAhead = 32 * 1024;

void mark_span(int64_t lo, int64_t hi, int64_t blocksize, std::vector<uint8_t>& need) {
    // [lo, hi) in bytes, hi > lo.
    const auto first = static_cast<std::size_t>(lo / blocksize);
    const auto last = static_cast<std::size_t>((hi - 1) / blocksize);
    // Unreachable for validated headers (the blocks cover the chunk): never leave a
    // destination unwritten.
    if (lo < 0 || last >= need.size())
        throw ChunkError("a destination reaches past the chunk's " + std::to_string(need.size()) +
                         " blocks");
    for (std::size_t b = first; b <= last; ++b) need[b] = 1;
}

// The bytes the sub-region of dimensions d.. spans (relative to its first element), and
// whether the blocks it needs are all the blocks of that span: true when its parts leave no
// gap of a whole block between them (no block can lie in a smaller gap).
struct Span {
    int64_t lo;
    int64_t hi;
    bool dense;
};

void region_spans(const StridedCopy& r, int64_t blocksize, Span* spans) {
    spans[r.ndim] = Span{0, static_cast<int64_t>(r.itemsize), true};
    for (std::size_t d = r.ndim; d-- > 0;) {
        const Span& inner = spans[d + 1];
        const int64_t reach = (r.counts[d] - 1) * r.src_strides[d];
        const int64_t stride = r.src_strides[d] < 0 ? -r.src_strides[d] : r.src_strides[d];
        const bool gapless = r.counts[d] <= 1 || stride - (inner.hi - inner.lo) < blocksize;
        spans[d] = Span{inner.lo + std::min<int64_t>(reach, 0),
                        inner.hi + std::max<int64_t>(reach, 0), inner.dense && gapless};
    }
}

void mark_rows(const StridedCopy& r, const Span* spans, std::size_t d, int64_t offset,
               int64_t blocksize, std::vector<uint8_t>& need) {
    if (spans[d].dense) {  // one span (a block of rows, a plane, the whole region)
        mark_span(offset + spans[d].lo, offset + spans[d].hi, blocksize, need);
        return;
    }
    // Parts a block or more apart (a column, one pixel of several channels, large steps):
    // only the blocks holding them, not every block in between.
    for (int64_t i = 0; i < r.counts[d]; ++i)
        mark_rows(r, spans, d + 1, offset + i * r.src_strides[d], blocksize, need);
}

// True when the only destination receives the whole chunk as one contiguous run.
bool whole_chunk_destination(const Stitch* stitches, std::size_t n, std::size_t itemsize,
                             std::size_t chunk_bytes) {
    if (n != 1 || stitches[0].src_offset != 0 || !stitches[0].region.is_contiguous()) return false;
    int64_t elements = 1;
    for (std::size_t d = 0; d < stitches[0].region.ndim; ++d)
        elements *= stitches[0].region.counts[d];
    return static_cast<std::size_t>(elements) * itemsize == chunk_bytes;
}

template <typename T, typename Swap>
void swap_units(uint8_t* data, std::size_t size, Swap swap) {
    for (std::size_t i = 0; i + sizeof(T) <= size; i += sizeof(T)) {
        T v;
        std::memcpy(&v, data + i, sizeof(T));
        v = swap(v);
        std::memcpy(data + i, &v, sizeof(T));
    }
}

// Reverses the byte order of every `width`-byte unit (items, or the parts of complex items).
void swap_byte_order(uint8_t* data, std::size_t size, std::size_t width) {
    switch (width) {
        case 2: return swap_units<uint16_t>(data, size, [](uint16_t v) { return __builtin_bswap16(v); });
        case 4: return swap_units<uint32_t>(data, size, [](uint32_t v) { return __builtin_bswap32(v); });
        case 8: return swap_units<uint64_t>(data, size, [](uint64_t v) { return __builtin_bswap64(v); });
        default:
            for (std::size_t i = 0; i + width <= size; i += width)
                std::reverse(data + i, data + i + width);
    }
}

// One past the last chunk byte any stitch reads.
std::size_t needed_end(const Stitch* stitches, std::size_t n, std::size_t itemsize) {
    int64_t end = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const StridedCopy& r = stitches[i].region;
        int64_t hi = stitches[i].src_offset + static_cast<int64_t>(itemsize);
        for (std::size_t d = 0; d < r.ndim; ++d)
            hi += std::max<int64_t>(0, (r.counts[d] - 1) * r.src_strides[d]);
        end = std::max(end, hi);
    }
    return static_cast<std::size_t>(end);
}

// Writes back and drops every cache line of [p, p + n) from the CPU caches (x86; elsewhere
// nothing).
void evict_from_cpu_caches(const uint8_t* p, std::size_t n) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    for (std::size_t i = 0; i < n; i += 64) _mm_clflush(p + i);
    if (n > 0) _mm_clflush(p + n - 1);
    _mm_mfence();
#else
    (void)p;
    (void)n;
#endif
}

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// finish_block unshuffles straight into the destinations when a block has at most this many
// (more: once into a buffer, then copies, cheaper than unshuffling the shared rows repeatedly).
constexpr std::size_t kFusedStitches = 2;

// Rows long enough for unshuffling them one by one to beat unshuffling the whole block: the
// innermost dimension contiguous in both buffers and at least one 128-item SIMD step long.
// (Strided innermost dimensions would make one call per item; short rows cost two cut steps
// each.)
bool rows_fusable(const StridedCopy& r) {
    if (r.ndim == 0) return false;
    const std::size_t d = r.ndim - 1;
    const auto item = static_cast<int64_t>(r.itemsize);
    return r.src_strides[d] == item && r.dst_strides[d] == item && r.counts[d] * item >= 128;
}

// A decoded, still bit-shuffled block (see blosc1_bitunshuffle_items) for unshuffle_run.
struct Planes {
    const uint8_t* data;
    std::size_t items;     // a multiple of 8
    std::size_t typesize;
    uint8_t* tmp;          // block-sized scratch
};

void unshuffle_run(const void* ctx, int64_t pos, int64_t len, uint8_t* dst) {
    const auto* p = static_cast<const Planes*>(ctx);
    const std::size_t t = p->typesize;
    const auto a = static_cast<std::size_t>(pos);
    const auto b = static_cast<std::size_t>(pos + len);
    if (t == 1) {
        bitunshuffle_u8_range(p->data, p->items / 8, a, b, dst);
        return;
    }
    // Whole items straight to dst; a run cut inside items (the array's items differ from
    // Blosc's) goes through the scratch's upper half.
    const std::size_t i0 = a / t;
    const std::size_t i1 = (b + t - 1) / t;
    if (a % t == 0 && b % t == 0) {
        blosc1_bitunshuffle_items(p->data, p->items, t, i0, i1, dst, p->tmp);
        return;
    }
    uint8_t* items = p->tmp + p->items * t;
    blosc1_bitunshuffle_items(p->data, p->items, t, i0, i1, items, p->tmp);
    std::memcpy(dst, items + (a - i0 * t), b - a);
}

}  // namespace

void mark_needed_blocks(const Stitch& stitch, int64_t blocksize, std::vector<uint8_t>& need) {
    Span spans[kMaxDims + 1];
    region_spans(stitch.region, blocksize, spans);
    mark_rows(stitch.region, spans, 0, stitch.src_offset, blocksize, need);
}

ChunkDecoder::ChunkDecoder(const ArraySpec& spec, const FileChunkSource& source,
                           const ShardReader* shards, ChunkCache* cache)
    : spec_(spec),
      source_(source),
      shards_(shards),
      cache_(cache),
      chunk_bytes_(spec.chunk_nbytes()) {}

std::string ChunkDecoder::label(const int64_t* coords) const {
    return shards_ != nullptr ? shards_->label(coords)
                              : chunk_key(spec_.keys, coords, spec_.ndim());
}

ChunkFile ChunkDecoder::open_chunk(const int64_t* coords) const {
    if (shards_ != nullptr) return shards_->open(coords, max_file_bytes());
    return source_.open(chunk_key(spec_.keys, coords, spec_.ndim()), max_file_bytes());
}

void ChunkDecoder::process_whole(const int64_t* coords, const Stitch* stitches, std::size_t n,
                                 OpenedChunk& opened) const {
    const std::string key = label(coords);
    WorkerScratch& s = scratch();
    const bool caching = cache_ != nullptr && cache_->enabled();
    try {
        if (!caching) {
            process_open(opened.opened ? std::move(opened.file) : open_chunk(coords), stitches,
                         n);
            return;
        }
        ChunkBytes cached = cache_->get(key);
        if (!cached) {
            const ChunkFile file = open_chunk(coords);
            if (!file.is_open()) {
                for (std::size_t i = 0; i < n; ++i)
                    fill_strided(stitches[i].dst, stitches[i].region, spec_.fill_value.data());
                return;
            }
            uint8_t* bytes = s.file.get(file.size());
            file.read_at(0, file.size(), bytes);
            cached = decode_whole(MutableBytes(bytes, file.size()));
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
        stream_raw(file, 0, stitches, n);
        return;
    }
    uint8_t* bytes = s.file.get(file.size());
    file.read_at(0, file.size(), bytes);
    const uint8_t* base = decode_needed(MutableBytes(bytes, file.size()), stitches, n);
    if (base != nullptr) stitch_all(base, stitches, n);
}

namespace {

[[noreturn]] void throw_shrank(const ChunkFile& file) {
    throw ChunkError("chunk file " + file.path() + " changed size while it was read (was " +
                     std::to_string(file.file_size()) + " bytes)");
}

}  // namespace

void ChunkDecoder::rethrow_in_context(const std::string& key) const {
    const std::string where = "array '" + spec_.name + "', chunk '" + key + "': ";
    try {
        throw;
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
        case Compressor::None: return chunk_bytes_;
        case Compressor::Blosc: return chunk_bytes_ + 16;
        case Compressor::Chain: break;
    }
    // zstd frames of incompressible data are slightly larger than the data; stay generous but
    // bounded so that a huge unrelated file is refused before it is read.
    return 2 * chunk_bytes_ + 65536;
}

uint8_t* ChunkDecoder::decode_chain(MutableBytes file, std::size_t want) const {
    WorkerScratch& s = scratch();
    uint8_t* data = file.data();
    std::size_t size = file.size();
    int next = 0;  // ping-pong buffer to write next
    for (std::size_t i = spec_.codecs.size(); i-- > 0;) {
        const bool last = i == 0;  // this step yields the raw chunk bytes
        switch (spec_.codecs[i]) {
            case Codec::Crc32c:
                size = check_crc32c(data, size);
                break;
            case Codec::Zstd: {
                ByteBuffer& out = s.chain[next];
                if (last && want < chunk_bytes_) {
                    // Only the first `want` bytes are needed: a zstd frame decodes in order,
                    // so stop there (the rest of the chunk's content is left undecoded).
                    uint8_t* prefix = out.get(chunk_bytes_);
                    if (s.zstd().decompress_prefix(data, size, prefix, chunk_bytes_, want)) {
                        data = prefix;
                        size = chunk_bytes_;
                        next ^= 1;
                        break;
                    }
                }
                size = s.zstd().decompress(data, size, out, chunk_bytes_, last, max_file_bytes());
                data = out.data();
                next ^= 1;
                break;
            }
            case Codec::Gzip: {
                ByteBuffer& out = s.chain[next];
                size = gunzip(data, size, out, chunk_bytes_, last, max_file_bytes());
                data = out.data();
                next ^= 1;
                break;
            }
            case Codec::Blosc: {  // always the first codec (validated), so the last decoded
                const BloscHeader h = validate_blosc_chunk(data, size, chunk_bytes_);
                if (h.memcpyed()) {
                    data += 16;
                    size = chunk_bytes_;
                    break;
                }
                uint8_t* decoded = s.decoded.get(chunk_bytes_);
                decode_blocks(h, MutableBytes(data, size), decoded, nullptr);
                data = decoded;
                size = chunk_bytes_;
                break;
            }
        }
    }
    if (size != chunk_bytes_)
        throw ChunkError("decoded chunk has " + std::to_string(size) +
                         " bytes, the chunk shape needs " + std::to_string(chunk_bytes_));
    if (spec_.swap_width > 1) {
        const std::size_t w = spec_.swap_width;
        // Only the decoded prefix, in whole units (want may be SIZE_MAX: everything).
        const std::size_t upto = want >= size ? size : std::min(size, (want / w + 1) * w);
        swap_byte_order(data, upto, w);
    }
    return data;
}

ChunkBytes ChunkDecoder::decode_whole(MutableBytes file) const {
    auto out = std::make_shared<std::vector<uint8_t>>(chunk_bytes_);
    if (spec_.compressor == Compressor::Chain) {
        std::memcpy(out->data(), decode_chain(file), chunk_bytes_);
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
        decode_blocks(h, file, out->data(), nullptr);
    return out;
}

void ChunkDecoder::check_uncompressed_size(std::size_t size) const {
    if (size != chunk_bytes_)
        throw ChunkError("uncompressed chunk has " + std::to_string(size) +
                         " bytes, the chunk shape needs " + std::to_string(chunk_bytes_));
}

std::size_t ChunkDecoder::plan_blocks(const BloscHeader& h, const Stitch* stitches,
                                      std::size_t n, bool whole) const {
    WorkerScratch& s = scratch();
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    s.skip.assign(nblocks, whole ? 0 : 1);
    if (whole) return nblocks;
    std::vector<uint8_t>& need = s.skip;  // first mark needed blocks, then invert
    std::fill(need.begin(), need.end(), 0);
    for (std::size_t i = 0; i < n; ++i) mark_needed_blocks(stitches[i], h.blocksize, need);
    std::size_t needed = 0;
    for (auto& b : need) {
        needed += b;
        b = static_cast<uint8_t>(b ^ 1);  // now: 1 = skip
    }
    return needed;
}

ChunkDecoder::Filter ChunkDecoder::block_filter(const BloscHeader& h) {
    // Blosc1's precedence: byte shuffle when its flag is set and items have several bytes.
    if (h.byte_shuffle() && h.typesize > 1) return Filter::Byte;
    return h.bit_shuffle() ? Filter::Bit : Filter::None;
}

bool ChunkDecoder::streams_direct(const BloscHeader& h) {
    // Chunks with C-Blosc2's delta filter (zarr never writes it) are left to C-Blosc2.
    return blosc_streams_decodable(h) && !h.delta();
}

void ChunkDecoder::decode_block_to(const BloscHeader& h, const uint8_t* block, std::size_t len,
                                   int64_t b, uint8_t* out) const {
    WorkerScratch& s = scratch();
    const auto bytes = static_cast<std::size_t>(blosc_block_bytes(h, b));
    const Filter filter = block_filter(h);
    if (filter == Filter::None) {
        decode_block_streams(h, block, len, b, out, s.zstd());
        return;
    }
    // Undo the shuffle right after decoding, while the block is in cache.
    uint8_t* raw = s.block_raw.get(bytes);
    decode_block_streams(h, block, len, b, raw, s.zstd());
    if (filter == Filter::Byte) {
        byte_unshuffle(raw, out, bytes, h.typesize);
        return;
    }
    blosc1_bitunshuffle(raw, out, bytes, h.typesize, s.block_tmp.get(bytes));
}

void ChunkDecoder::finish_block(const BloscHeader& h, const uint8_t* block, std::size_t len,
                                int64_t b, const Stitch* stitches, std::size_t n, bool whole,
                                bool stitch) const {
    const int64_t lo = static_cast<int64_t>(b) * h.blocksize;
    if (whole) {
        decode_block_to(h, block, len, b, stitches[0].dst + lo);
        return;
    }
    WorkerScratch& s = scratch();
    bool fusable = stitch && n <= kFusedStitches && block_filter(h) == Filter::Bit;
    // Not for streamed outputs (larger than the cache): the fused kernel's plain stores read
    // each output line in first; unshuffling into the block buffer and copying out with
    // non-temporal stores was 2% faster for read_crops batches of 16 960x960 crops.
    for (std::size_t i = 0; fusable && i < n; ++i)
        fusable = rows_fusable(stitches[i].region) && !stitches[i].region.stream;
    if (fusable) {
        // Bit shuffle: unshuffle each destination's rows straight from the decoded planes
        // into the output, only the 8-item groups they touch.
        const auto bytes = static_cast<std::size_t>(blosc_block_bytes(h, b));
        const auto t = static_cast<std::size_t>(h.typesize);
        // Else Blosc1 left the block unshuffled, or left bytes after the last item as they
        // are: the block-buffer path below handles those.
        if (bytes % t == 0 && blosc1_block_bitshuffled(bytes, t)) {
            uint8_t* raw = s.block_raw.get(bytes);
            uint8_t* tmp = t > 1 ? s.block_tmp.get(2 * bytes) : nullptr;
            decode_block_streams(h, block, len, b, raw, s.zstd());
            const Planes planes{raw, bytes / t, t, tmp};
            for (std::size_t i = 0; i < n; ++i)
                copy_window_runs(lo, lo + static_cast<int64_t>(bytes), stitches[i].src_offset,
                                 stitches[i].dst, stitches[i].region, unshuffle_run, &planes);
            return;
        }
    }
    uint8_t* decoded_block = s.block.get(static_cast<std::size_t>(h.blocksize));
    decode_block_to(h, block, len, b, decoded_block);
    if (!stitch) return;
    const int64_t hi = lo + blosc_block_bytes(h, b);
    for (std::size_t i = 0; i < n; ++i)
        copy_strided_window(decoded_block, lo, hi, stitches[i].src_offset, stitches[i].dst,
                            stitches[i].region);
}

const uint8_t* ChunkDecoder::decode_planned(const BloscHeader& h, MutableBytes file,
                                            const std::vector<BlockExtent>& extents,
                                            const Stitch* stitches, std::size_t n, bool whole,
                                            std::size_t needed, bool stitch) const {
    WorkerScratch& s = scratch();
    if (streams_direct(h)) {
        // Block by block, each on to its destinations while in cache: no chunk-sized
        // intermediate.
        const int64_t nblocks = h.nblocks();
        for (int64_t b = 0; b < nblocks; ++b) {
            if (!whole && s.skip[static_cast<std::size_t>(b)]) continue;
            const BlockExtent& e = extents[static_cast<std::size_t>(b)];
            finish_block(h, file.data() + e.start, e.end - e.start, b, stitches, n, whole,
                         stitch);
        }
        return nullptr;
    }
    if (whole) {
        // The destination holds the whole chunk as one run: decode straight into it.
        decode_blocks(h, file, stitches[0].dst, nullptr);
        return nullptr;
    }
        const bool all = needed == static_cast<std::size_t>(h.nblocks());
    uint8_t* decoded = s.decoded.get(chunk_bytes_);
    decode_blocks(h, file, decoded, all ? nullptr : &s.skip);
    return decoded;
}

const uint8_t* ChunkDecoder::decode_needed(MutableBytes file, const Stitch* stitches,
                                           std::size_t n, bool stitch) const {
    if (spec_.compressor == Compressor::Chain)
        return decode_chain(file, needed_end(stitches, n, spec_.itemsize));
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
    const std::size_t needed = plan_blocks(h, stitches, n, whole);
    return decode_planned(h, file, extents, stitches, n, whole, needed, stitch);
}

std::vector<ByteRange> ChunkDecoder::needed_ranges(const std::vector<BlockExtent>& extents,
                                                   const std::vector<uint8_t>& skip, bool all) {
    std::vector<ByteRange> ranges;
    for (std::size_t b = 0; b < extents.size(); ++b)
        if (all || !skip[b]) ranges.push_back(ByteRange{extents[b].start, extents[b].end});
    return ranges;
}

ChunkDecoder::LoadedChunk ChunkDecoder::load_needed(const ChunkFile& file, const Stitch* stitches,
                                                    std::size_t n, bool cold) const {
    WorkerScratch& s = scratch();
    const std::size_t size = file.size();
    uint8_t* buf = s.file.get(size);
    file.read_at(0, 16, buf);  // size >= kPartialReadMin > 16
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
        stream_raw(file, 16, stitches, n);
        c.kind = LoadedChunk::RawCopied;
        return c;
    }

    const std::size_t prefix = blosc_prefix_bytes(h);
    file.read_at(16, prefix - 16, buf + 16);
    c.extents = blosc_block_extents(h, buf, size);
    const std::vector<BlockExtent>& extents = c.extents;
    c.needed = plan_blocks(h, stitches, n, c.whole);
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

void ChunkDecoder::stream_raw(const ChunkFile& file, std::size_t data_offset,
                              const Stitch* stitches, std::size_t n) const {
    constexpr std::size_t kGranule = 4096;
    // Windows of half a typical L2: measured on the random-content benchmark (2 threads), CPU
    // per crop fell by 20% against scatter reads straight into the output; 32-64 KiB windows
    // (more syscalls) were slower than those, 1-4 MiB no better.
    constexpr std::size_t kWindow = 512 * 1024;
    WorkerScratch& s = scratch();
    const std::size_t granules = (chunk_bytes_ + kGranule - 1) / kGranule;
    std::vector<uint8_t>& need = s.skip;  // here: 1 = needed
    need.assign(granules, 0);
    for (std::size_t i = 0; i < n; ++i)
        mark_needed_blocks(stitches[i], static_cast<int64_t>(kGranule), need);
    uint8_t* window = s.block.get(kWindow);
    for (std::size_t g = 0; g < granules;) {
        if (!need[g]) {
            ++g;
            continue;
        }
        std::size_t e = g;
        while (e < granules && need[e]) ++e;
        const std::size_t hi = std::min(e * kGranule, chunk_bytes_);
        for (std::size_t lo = g * kGranule; lo < hi; lo += kWindow) {
            const std::size_t end = std::min(lo + kWindow, hi);
            file.read_at(data_offset + lo, end - lo, window);
            for (std::size_t i = 0; i < n; ++i)
                copy_strided_window(window, static_cast<int64_t>(lo),
                                    static_cast<int64_t>(end), stitches[i].src_offset,
                                    stitches[i].dst, stitches[i].region);
        }
        g = e;
    }
}

void ChunkDecoder::open_ahead(const int64_t* coords, OpenedChunk& opened) const {
    if (cache_ != nullptr && cache_->enabled()) return;
    try {
        opened.file = open_chunk(coords);
        opened.opened = true;
        const ChunkFile& f = opened.file;
        if (!f.is_open() || f.size() == 0) return;
        uint8_t head[16];
        if (read_if_cached(f, 0, std::min(f.size(), sizeof head), head) != Residency::NotCached)
            return;
        opened.cold = true;
        count_cold_chunk();
        // Raw chunks are streamed in order (the kernel's own read-ahead serves that).
        if (spec_.compressor == Compressor::None) return;
        const bool whole = spec_.compressor != Compressor::Blosc || f.size() < kPartialReadMin;
        read_ahead(f, {ByteRange{0, whole ? f.size() : std::min(f.size(), kPrefixAhead)}});
    } catch (...) {
        rethrow_in_context(label(coords));
    }
}

std::size_t ChunkDecoder::prefetch_chunk(const int64_t* coords) const {
    try {
        const ChunkFile f = open_chunk(coords);
        if (!f.is_open() || f.size() == 0) return 0;
        uint8_t head[16];
        if (read_if_cached(f, 0, std::min(f.size(), sizeof head), head) != Residency::NotCached)
            return 0;
        read_ahead(f, {ByteRange{0, f.size()}});
        return f.size();
    } catch (...) {
        rethrow_in_context(label(coords));
    }
}

bool ChunkDecoder::process_or_plan(const int64_t* coords, const Stitch* stitches, std::size_t n,
                                   OpenedChunk& opened, BlockJob& job, ThreadPool* split_pool,
                                   const CancelFlags* cancel) const {
    if (spec_.compressor != Compressor::Blosc || (cache_ != nullptr && cache_->enabled())) {
        process_whole(coords, stitches, n, opened);
        return false;
    }
    std::string key = label(coords);
    try {
        ChunkFile file = opened.opened ? std::move(opened.file) : open_chunk(coords);
        if (!file.is_open() || file.size() < kPartialReadMin) {
            process_open(file, stitches, n);  // missing or small: read whole, nothing to spread
            return false;
        }
        LoadedChunk c = load_needed(file, stitches, n, opened.cold);
        if (c.kind == LoadedChunk::RawCopied) return false;
        if (c.deferred) {
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
            job.mapping = process_mappings().get(job.file);
            if (job.mapping && job.file.base() + job.file.size() <= job.mapping->size())
                job.mapped = job.mapping->data() + job.file.base();
            else
                job.mapping.reset();
            read_ahead_blocks(job, opened.cold);
            return true;
        }
        if (split_pool != nullptr && c.needed >= 2) {
            decode_split(c, stitches, n, *split_pool, cancel);
            return false;
        }
        const uint8_t* base = decode_planned(c.h, c.bytes, c.extents, stitches, n, c.whole,
                                             c.needed);
        if (base != nullptr) stitch_all(base, stitches, n);
        return false;
    } catch (...) {
        rethrow_in_context(key);
    }
}

void ChunkDecoder::read_ahead_blocks(BlockJob& job, bool cold) const {
    if (job.blocks.empty()) return;
    std::vector<ByteRange> ranges;
    ranges.reserve(job.blocks.size());
    std::size_t lo = SIZE_MAX;
    std::size_t hi = 0;
    for (const int32_t b : job.blocks) {
        const BlockExtent& e = job.extents[static_cast<std::size_t>(b)];
        ranges.push_back(ByteRange{e.start, e.end});
        lo = std::min<std::size_t>(lo, e.start);
        hi = std::max<std::size_t>(hi, e.end);
    }
    // A warm header says little about the blocks (an earlier crop may have read only some):
    // a mapped chunk's pages are checked, one syscall over the needed span.
    if (!cold && (job.mapped == nullptr ||
                  mapped_residency(job.mapping->data(), job.mapped, lo, hi - lo) !=
                      Residency::NotCached))
        return;
    read_ahead(job.file, std::move(ranges));
    job.reading_ahead = true;
}

void ChunkDecoder::decode_block(const BlockJob& job, std::size_t k) const {
    const int32_t b = job.blocks[k];
    const BlockExtent& e = job.extents[static_cast<std::size_t>(b)];
    const std::size_t len = e.end - e.start;
    WorkerScratch& s = scratch();
    try {
        if (job.mapped != nullptr) {
            // Straight from the page cache: no copy. decode_block_streams checks every size
            // where it uses it, as the file may change under the mapping.
            try {
                const MappedReadGuard guard(*job.mapping);
                finish_block(job.h, job.mapped + e.start, len, b, job.stitches, job.n,
                             job.whole, /*stitch=*/true);
            } catch (const ChunkError&) {
                if (!job.mapping->damaged()) throw;
            }
            if (job.mapping->damaged()) throw_shrank(job.file);
            return;
        }
        uint8_t* compressed = s.compressed.get(len);
        job.file.read_at(e.start, len, compressed);
        finish_block(job.h, compressed, len, b, job.stitches, job.n, job.whole,
                     /*stitch=*/true);
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

bool ChunkDecoder::own_unshuffle(const BloscHeader& h) {
    // Bit-shuffled 1-byte items: C-Blosc2 would unshuffle them with a scalar loop.
    return h.bit_shuffle() && !h.byte_shuffle() && h.typesize == 1;
}

void ChunkDecoder::unshuffle_block(const BloscHeader& h, int64_t b, const uint8_t* shuffled,
                                   uint8_t* dst) {
    const auto offset = static_cast<std::size_t>(b) * static_cast<std::size_t>(h.blocksize);
    const auto bytes = static_cast<std::size_t>(blosc_block_bytes(h, b));
    blosc1_bitunshuffle(shuffled + offset, dst + offset, bytes, 1, nullptr);  // 1-byte items
}

void ChunkDecoder::decode_blocks(const BloscHeader& h, MutableBytes file, uint8_t* dst,
                                 const std::vector<uint8_t>* skip) const {
    WorkerScratch& s = scratch();
    if (!own_unshuffle(h)) {
        if (skip == nullptr)
            s.blosc().decompress(file.data(), file.size(), dst, chunk_bytes_);
        else
            s.blosc().decompress_blocks(h, file.data(), file.size(), dst, chunk_bytes_, *skip);
        return;
    }
    // Bit-shuffled 1-byte items: clear the flag in our copy of the header so C-Blosc2 stops
    // before its scalar unshuffle, then unshuffle each block ourselves right after it is
    // decoded, while it is still in cache.
    blosc_clear_bitshuffle(file.data(), h);
    uint8_t* shuffled = s.shuffled.get(chunk_bytes_);
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    s.block_mask.assign(nblocks, 1);
    for (std::size_t b = 0; b < nblocks; ++b) {
        if (skip != nullptr && (*skip)[b]) continue;
        s.block_mask[b] = 0;
        s.blosc().decompress_blocks(h, file.data(), file.size(), shuffled, chunk_bytes_,
                                    s.block_mask);
        s.block_mask[b] = 1;
        unshuffle_block(h, static_cast<int64_t>(b), shuffled, dst);
    }
}

double ChunkDecoder::time_decode(const int64_t* coords, const Stitch* stitches,
                                 std::size_t n) const {
    std::vector<uint8_t> file;
    {
        const ChunkFile f = open_chunk(coords);
        if (!f.is_open()) return 0.0;
        file.resize(f.size());
        f.read_at(0, f.size(), file.data());
    }
    // The bytes just read are in the CPU caches; a read finds them in memory (the page
    // cache): decode them from there too. Measured on the photo benchmark's batches: the
    // bound is 1.3% lower from memory than from cache.
    evict_from_cpu_caches(file.data(), file.size());
    // Thread CPU time, not wall time: on a shared machine the bound should not include time
    // this thread spent waiting for a core.
    const double t0 = thread_cpu_seconds();
    const uint8_t* base = decode_needed(MutableBytes(file), stitches, n, /*stitch=*/false);
    const bool raw =
        spec_.compressor == Compressor::None || blosc_memcpyed(file.data(), file.size());
    // Raw (uncompressed or memcpyed) chunks are "decoded" by copying the needed bytes out.
    if (raw && base != nullptr) stitch_all(base, stitches, n);
    return thread_cpu_seconds() - t0;
}

}  // namespace zarrcrop
