#include "codec/blosc_decoder.hpp"

#include <blosc2.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <mutex>

#include "codec/codecs.hpp"
#include "errors.hpp"

// LZ4's decoder, inside the static C-Blosc2 (LZ4's stable public API; C-Blosc2 ships no lz4.h).
extern "C" int LZ4_decompress_safe(const char* src, char* dst, int compressed_size,
                                   int dst_capacity);

namespace zarrcrop {

namespace {

constexpr std::size_t kHeaderSize = 16;
constexpr int kCodecLz4 = 1;
constexpr int kCodecZstd = 4;

int32_t read_i32(const uint8_t* p) {
    // Blosc headers are little endian; so is every platform this builds on, but be explicit.
    return static_cast<int32_t>(static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                                (static_cast<uint32_t>(p[2]) << 16) |
                                (static_cast<uint32_t>(p[3]) << 24));
}

[[noreturn]] void bad(const std::string& why) {
    throw ChunkError("malformed Blosc chunk: " + why);
}

const char* codec_name(int code) {
    switch (code) {
        case 0:
            return "blosclz";
        case 1:
            return "lz4";
        case 3:
            return "zlib";
        case 4:
            return "zstd";
        default:
            return nullptr;
    }
}

}  // namespace

std::size_t blosc_stated_size(const uint8_t* src) {
    const int32_t cbytes = read_i32(src + 12);
    return cbytes < 0 ? 0 : static_cast<std::size_t>(cbytes);
}

BloscHeader validate_blosc_header(const uint8_t* src, std::size_t size,
                                  std::size_t expected_nbytes) {
    if (size < kHeaderSize)
        bad("file has " + std::to_string(size) + " bytes, shorter than the 16-byte header");
    BloscHeader h;
    h.version = src[0];
    h.flags = src[BloscHeader::kFlagsByte];
    h.typesize = src[3];
    h.nbytes = read_i32(src + 4);
    h.blocksize = read_i32(src + 8);
    h.cbytes = read_i32(src + 12);

    if (h.version != 2)
        bad("format version " + std::to_string(h.version) + " (expected 2, Blosc1 format)");
    if (h.byte_shuffle() && h.bit_shuffle())
        bad("flags announce a Blosc2 extended header, which zarr never writes");
    if (codec_name(h.codec()) == nullptr)
        bad("unsupported compressor code " + std::to_string(h.codec()));
    if (h.cbytes < 0 || static_cast<std::size_t>(h.cbytes) != size)
        bad("header says " + std::to_string(h.cbytes) + " compressed bytes but the chunk has " +
            std::to_string(size));
    if (h.nbytes < 0 || static_cast<std::size_t>(h.nbytes) != expected_nbytes)
        bad("header says " + std::to_string(h.nbytes) +
            " decompressed bytes, the chunk shape needs " + std::to_string(expected_nbytes));
    if (static_cast<int64_t>(h.cbytes) > static_cast<int64_t>(h.nbytes) + 16)
        bad("compressed size exceeds decompressed size plus header");
    // Any other typesize is valid: it only says how the writer shuffled and split the bytes
    // (zarr v3's blosc codec records it apart from the data type, e.g. typesize 4 for uint8),
    // and the decoders below handle every value.
    if (h.typesize == 0) bad("typesize 0");
    if (h.blocksize <= 0 || h.blocksize > h.nbytes)
        bad("invalid block size " + std::to_string(h.blocksize));
    // blocksize <= nbytes < 2**31: nblocks() is at least 1 and fits int32 (C-Blosc2's masks).
    if (h.nblocks() < 1 || h.nblocks() > INT32_MAX) bad("invalid block count");
    if (h.memcpyed()) {
        if (static_cast<std::size_t>(h.cbytes) != kHeaderSize + static_cast<std::size_t>(h.nbytes))
            bad("uncompressed (memcpyed) chunk has the wrong length");
    } else if (blosc_prefix_bytes(h) > size) {
        bad("block offset table runs past the end of the chunk");
    }
    return h;
}

std::size_t blosc_prefix_bytes(const BloscHeader& h) {
    if (h.memcpyed()) return kHeaderSize;
    return kHeaderSize + 4 * static_cast<std::size_t>(h.nblocks());
}

std::vector<BlockExtent> blosc_block_extents(const BloscHeader& h, const uint8_t* src,
                                             std::size_t size) {
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    const std::size_t body = blosc_prefix_bytes(h);
    std::vector<BlockExtent> extents(nblocks);
    std::vector<std::pair<uint32_t, std::size_t>> order(nblocks);
    for (std::size_t b = 0; b < nblocks; ++b) {
        const int32_t start = read_i32(src + kHeaderSize + 4 * b);
        if (start < 0 || static_cast<std::size_t>(start) < body ||
            static_cast<std::size_t>(start) >= size)
            bad("block " + std::to_string(b) + " starts outside the chunk");
        order[b] = {static_cast<uint32_t>(start), b};
    }
    // Blocks may be stored in any order (parallel writers); each ends where the next begins.
    std::sort(order.begin(), order.end());
    for (std::size_t i = 0; i < nblocks; ++i) {
        const uint32_t end = i + 1 < nblocks ? order[i + 1].first : static_cast<uint32_t>(size);
        if (end <= order[i].first)
            bad("blocks " + std::to_string(order[i].second) + " and " +
                std::to_string(order[i + 1].second) + " overlap");
        extents[order[i].second] = {order[i].first, end};
    }
    return extents;
}

namespace {

// How block b is split into streams: their count and the decoded bytes of each.
struct StreamLayout {
    int64_t count;
    std::size_t bytes;
};

StreamLayout stream_layout(const BloscHeader& h, int64_t b) {
    const int64_t block_bytes = blosc_block_bytes(h, b);
    const bool leftover = block_bytes < h.blocksize;
    const int64_t count = (h.no_split() || leftover) ? 1 : static_cast<int64_t>(h.typesize);
    if (block_bytes % count != 0) bad("block size is not a multiple of the typesize");
    return {count, static_cast<std::size_t>(block_bytes / count)};
}

// The compressed size of the stream whose 4-byte size field is at block + pos, checked to be
// positive, at most the stream's decoded size and inside the block's `len` bytes; pos moves
// past the field. Read once and checked where it is used: the block may be a mapping of a
// file that someone rewrites meanwhile.
std::size_t next_stream_size(const uint8_t* block, std::size_t len, std::size_t& pos,
                             std::size_t stream_bytes, int64_t b) {
    if (pos + 4 > len) bad("block " + std::to_string(b) + " runs past its end");
    const int32_t stored = read_i32(block + pos);
    pos += 4;
    if (stored <= 0 || static_cast<std::size_t>(stored) > stream_bytes)
        bad("block " + std::to_string(b) + " has a stream of invalid size " +
            std::to_string(stored));
    const auto csize = static_cast<std::size_t>(stored);
    if (pos + csize > len) bad("block " + std::to_string(b) + " runs past its end");
    return csize;
}

}  // namespace

void validate_blosc_block(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b) {
    const StreamLayout streams = stream_layout(h, b);
    std::size_t pos = 0;
    for (int64_t s = 0; s < streams.count; ++s) {
        const std::size_t csize = next_stream_size(block, len, pos, streams.bytes, b);
        pos += csize;
    }
}

void validate_blosc_streams(const BloscHeader& h, const uint8_t* src,
                            const std::vector<BlockExtent>& extents,
                            const std::vector<uint8_t>* skip) {
    const int64_t nblocks = h.nblocks();
    for (int64_t b = 0; b < nblocks; ++b) {
        if (skip != nullptr && (*skip)[static_cast<std::size_t>(b)]) continue;
        const BlockExtent& e = extents[static_cast<std::size_t>(b)];
        validate_blosc_block(h, src + e.start, e.end - e.start, b);
    }
}

bool blosc_streams_decodable(const BloscHeader& h) {
    const int codec = h.codec();
    return codec == kCodecLz4 || codec == kCodecZstd;
}

void decode_block_streams(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b,
                          uint8_t* dst, ZstdDecoder& zstd) {
    // validate_blosc_block's walk, each size checked as it is read (see next_stream_size).
    const StreamLayout streams = stream_layout(h, b);
    const std::size_t stream_bytes = streams.bytes;
    std::size_t pos = 0;
    for (int64_t s = 0; s < streams.count; ++s) {
        const std::size_t csize = next_stream_size(block, len, pos, stream_bytes, b);
        uint8_t* out = dst + static_cast<std::size_t>(s) * stream_bytes;
        if (csize == stream_bytes) {
            std::memcpy(out, block + pos, stream_bytes);  // stored raw: did not compress
        } else if (h.codec() == kCodecLz4) {
            // Both sizes are below 2 GiB (validated); LZ4 never writes past dst_capacity.
            const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(block + pos),
                                              reinterpret_cast<char*>(out), static_cast<int>(csize),
                                              static_cast<int>(stream_bytes));
            if (n < 0 || static_cast<std::size_t>(n) != stream_bytes)
                bad("block " + std::to_string(b) + ": lz4 stream does not decode to " +
                    std::to_string(stream_bytes) + " bytes");
        } else {
            try {
                zstd.decompress_exact(block + pos, csize, out, stream_bytes);
            } catch (const ChunkError& err) {
                bad("block " + std::to_string(b) + ": " + err.what());
            }
        }
        pos += csize;
    }
}

BloscHeader validate_blosc_chunk(const uint8_t* src, std::size_t size,
                                 std::size_t expected_nbytes) {
    const BloscHeader h = validate_blosc_header(src, size, expected_nbytes);
    if (!h.memcpyed()) validate_blosc_streams(h, src, blosc_block_extents(h, src, size), nullptr);
    return h;
}

BloscDecoder::BloscDecoder() {
    blosc2_dparams params = BLOSC2_DPARAMS_DEFAULTS;
    params.nthreads = 1;  // parallelism comes from our own pool, across chunks
    ctx_ = blosc2_create_dctx(params);
    if (ctx_ == nullptr) throw std::bad_alloc();
}

BloscDecoder::~BloscDecoder() {
    blosc2_free_ctx(ctx_);
}

void BloscDecoder::decompress(const uint8_t* src, std::size_t size, uint8_t* dst,
                              std::size_t dst_size) {
    const int n = blosc2_decompress_ctx(ctx_, src, static_cast<int32_t>(size), dst,
                                        static_cast<int32_t>(dst_size));
    if (n < 0 || static_cast<std::size_t>(n) != dst_size)
        throw ChunkError("Blosc decompression failed (code " + std::to_string(n) + ")");
}

void BloscDecoder::decompress_blocks(const BloscHeader& h, const uint8_t* src, std::size_t size,
                                     uint8_t* dst, std::size_t dst_size,
                                     const std::vector<uint8_t>& skip) {
    const int64_t nblocks = h.nblocks();
    if (skip.size() != static_cast<std::size_t>(nblocks))
        throw std::logic_error("block mask does not match the chunk's block count");
    static_assert(sizeof(bool) == 1, "the block mask is passed as bool[]");
    std::size_t expected = 0;
    for (int64_t b = 0; b < nblocks; ++b) {
        if (skip[static_cast<std::size_t>(b)]) continue;
        expected += static_cast<std::size_t>(blosc_block_bytes(h, b));
    }
    // C-Blosc2 copies the mask; it applies to the next decompression on this context only.
    // nblocks fits int (validate_blosc_header).
    auto* mask = reinterpret_cast<bool*>(const_cast<uint8_t*>(skip.data()));
    if (blosc2_set_maskout(ctx_, mask, static_cast<int>(nblocks)) < 0)
        throw ChunkError("Blosc rejected the block mask");
    const int n = blosc2_decompress_ctx(ctx_, src, static_cast<int32_t>(size), dst,
                                        static_cast<int32_t>(dst_size));
    // C-Blosc2 documents that masked-out blocks are not counted, but 3.x returns the full
    // nbytes; accept both, nothing else.
    if (n < 0 ||
        (static_cast<std::size_t>(n) != expected && static_cast<std::size_t>(n) != dst_size)) {
        // A failed call may leave the mask armed; start the next decode from a clean context.
        blosc2_free_ctx(ctx_);
        blosc2_dparams params = BLOSC2_DPARAMS_DEFAULTS;
        params.nthreads = 1;
        ctx_ = blosc2_create_dctx(params);
        if (ctx_ == nullptr) throw std::bad_alloc();
        throw ChunkError("Blosc decompression failed (code " + std::to_string(n) + ")");
    }
}

void blosc_library_init() {
    static std::once_flag once;
    std::call_once(once, [] { blosc2_init(); });
}

std::string blosc_library_version() {
    return BLOSC2_VERSION_STRING;
}

}  // namespace zarrcrop
