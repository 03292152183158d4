#include "codec/codecs.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <new>
#include <string>

#include "errors.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define ZARRCROP_HAVE_SSE42_CRC 1
#endif

// The zstd API, as exported by the zstd copy compiled into libblosc2.a (no header ships).
extern "C" {
struct ZSTD_DCtx_s;
ZSTD_DCtx_s* ZSTD_createDCtx(void);
std::size_t ZSTD_freeDCtx(ZSTD_DCtx_s* dctx);
std::size_t ZSTD_decompressDCtx(ZSTD_DCtx_s* dctx, void* dst, std::size_t dst_capacity,
                                const void* src, std::size_t src_size);
unsigned long long ZSTD_getFrameContentSize(const void* src, std::size_t src_size);
unsigned long long ZSTD_findDecompressedSize(const void* src, std::size_t src_size);
unsigned ZSTD_isError(std::size_t code);
const char* ZSTD_getErrorName(std::size_t code);
// Streaming decompression (zstd.h, stable API): decode a frame's first bytes only.
struct ZSTD_inBuffer_s {
    const void* src;
    std::size_t size;
    std::size_t pos;
};
struct ZSTD_outBuffer_s {
    void* dst;
    std::size_t size;
    std::size_t pos;
};
std::size_t ZSTD_DCtx_reset(ZSTD_DCtx_s* dctx, int reset);  // 1 = ZSTD_reset_session_only
std::size_t ZSTD_findFrameCompressedSize(const void* src, std::size_t src_size);
std::size_t ZSTD_decompressStream(ZSTD_DCtx_s* dctx, ZSTD_outBuffer_s* output,
                                  ZSTD_inBuffer_s* input);

// zlib-ng 2.x native API (zlib-ng.h): the stream layout is part of its stable ABI.
struct zng_stream_s {
    const uint8_t* next_in;
    uint32_t avail_in;
    std::size_t total_in;
    uint8_t* next_out;
    uint32_t avail_out;
    std::size_t total_out;
    const char* msg;
    void* state;
    void* zalloc;
    void* zfree;
    void* opaque;
    int data_type;
    uint32_t adler;
    unsigned long reserved;
};
const char* zlibng_version(void);
int32_t zng_inflateInit2(zng_stream_s* strm, int32_t window_bits);
int32_t zng_inflate(zng_stream_s* strm, int32_t flush);
int32_t zng_inflateEnd(zng_stream_s* strm);
int32_t zng_inflateReset(zng_stream_s* strm);
}

namespace zarrcrop {

namespace {

constexpr unsigned long long kZstdSizeUnknown = static_cast<unsigned long long>(-1);
constexpr unsigned long long kZstdSizeError = static_cast<unsigned long long>(-2);

std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    return table;
}

uint32_t crc32c_portable(uint32_t crc, const uint8_t* p, std::size_t n) {
    static const std::array<uint32_t, 256> table = make_crc_table();
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(ZARRCROP_HAVE_SSE42_CRC)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const uint8_t* p,
                                                        std::size_t n) {
    uint64_t c = crc;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        __builtin_memcpy(&v, p + i, 8);
        c = _mm_crc32_u64(c, v);
    }
    auto c32 = static_cast<uint32_t>(c);
    for (; i < n; ++i) c32 = _mm_crc32_u8(c32, p[i]);
    return c32;
}

bool cpu_has_sse42() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("sse4.2") != 0;
    }();
    return has;
}
#endif

}  // namespace

uint32_t crc32c(const uint8_t* data, std::size_t size) {
#if defined(ZARRCROP_HAVE_SSE42_CRC)
    if (cpu_has_sse42()) return ~crc32c_sse42(0xFFFFFFFFu, data, size);
#endif
    return ~crc32c_portable(0xFFFFFFFFu, data, size);
}

std::size_t check_crc32c(const uint8_t* data, std::size_t size) {
    if (size < 4)
        throw ChunkError("crc32c: " + std::to_string(size) + " bytes, shorter than the checksum");
    const std::size_t n = size - 4;
    const uint32_t stored =
        static_cast<uint32_t>(data[n]) | (static_cast<uint32_t>(data[n + 1]) << 8) |
        (static_cast<uint32_t>(data[n + 2]) << 16) | (static_cast<uint32_t>(data[n + 3]) << 24);
    if (crc32c(data, n) != stored) throw ChunkError("crc32c checksum mismatch");
    return n;
}

ZstdDecoder::ZstdDecoder() : ctx_(ZSTD_createDCtx()) {
    if (ctx_ == nullptr) throw std::bad_alloc();
}

ZstdDecoder::~ZstdDecoder() {
    ZSTD_freeDCtx(static_cast<ZSTD_DCtx_s*>(ctx_));
}

std::size_t ZstdDecoder::decompress(const uint8_t* src, std::size_t size, ByteBuffer& dst,
                                    std::size_t expected, bool exact, std::size_t max_size) {
    // The sum over all frames (skippable ones count 0): a chunk may hold several frames.
    const unsigned long long announced = ZSTD_findDecompressedSize(src, size);
    if (announced == kZstdSizeError) throw ChunkError("zstd: not a valid sequence of zstd frames");
    std::size_t capacity = expected;
    if (!exact) {
        if (announced == kZstdSizeUnknown)
            throw ChunkError("zstd: a frame does not announce its decompressed size");
        if (announced > max_size) throw ChunkError("zstd: decompressed size too large");
        capacity = static_cast<std::size_t>(announced);
    } else if (announced != kZstdSizeUnknown && announced != expected) {
        throw ChunkError("zstd: frames announce " + std::to_string(announced) +
                         " bytes, the chunk needs " + std::to_string(expected));
    }
    uint8_t* out = dst.get(capacity > 0 ? capacity : 1);
    const std::size_t n =
        ZSTD_decompressDCtx(static_cast<ZSTD_DCtx_s*>(ctx_), out, capacity, src, size);
    if (ZSTD_isError(n)) throw ChunkError(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (n != capacity)
        throw ChunkError("zstd: decompressed " + std::to_string(n) + " bytes, expected " +
                         std::to_string(capacity));
    return n;
}

void ZstdDecoder::decompress_exact(const uint8_t* src, std::size_t size, uint8_t* dst,
                                   std::size_t expected) {
    const std::size_t n =
        ZSTD_decompressDCtx(static_cast<ZSTD_DCtx_s*>(ctx_), dst, expected, src, size);
    if (ZSTD_isError(n)) throw ChunkError(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (n != expected)
        throw ChunkError("zstd: decompressed " + std::to_string(n) + " bytes, expected " +
                         std::to_string(expected));
}

bool ZstdDecoder::decompress_prefix(const uint8_t* src, std::size_t size, uint8_t* dst,
                                    std::size_t expected, std::size_t want) {
    // Only one whole frame that announces the chunk's size qualifies: its block headers are
    // walked (not decoded) to check that it ends exactly at the end of the data, so truncated
    // frames and trailing bytes are still refused as by a full decode.
    const unsigned long long announced = ZSTD_getFrameContentSize(src, size);
    if (announced != expected) return false;
    if (ZSTD_findFrameCompressedSize(src, size) != size) return false;
    auto* ctx = static_cast<ZSTD_DCtx_s*>(ctx_);
    ZSTD_DCtx_reset(ctx, 1);
    ZSTD_inBuffer_s in{src, size, 0};
    ZSTD_outBuffer_s out{dst, want, 0};  // the decoder writes no further than `want`
    while (out.pos < want) {
        const std::size_t before_in = in.pos;
        const std::size_t before_out = out.pos;
        const std::size_t r = ZSTD_decompressStream(ctx, &out, &in);
        if (ZSTD_isError(r)) {
            ZSTD_DCtx_reset(ctx, 1);
            throw ChunkError(std::string("zstd: ") + ZSTD_getErrorName(r));
        }
        if (out.pos < want && in.pos == before_in && out.pos == before_out) {
            ZSTD_DCtx_reset(ctx, 1);  // no progress: the input ended before `want` bytes
            throw ChunkError("zstd: data ends after " + std::to_string(out.pos) +
                             " bytes, the chunk needs " + std::to_string(expected));
        }
    }
    ZSTD_DCtx_reset(ctx, 1);  // the rest of the frame is not needed
    return true;
}

bool gzip_available() {
    const char* version = zlibng_version();
    return version != nullptr && version[0] == '2' && version[1] == '.';
}

namespace {

bool all_zero(const uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (p[i] != 0) return false;
    return true;
}

}  // namespace

std::size_t gunzip(const uint8_t* src, std::size_t size, ByteBuffer& dst, std::size_t expected,
                   bool exact, std::size_t max_size) {
    constexpr int32_t kGzipOnly = 16 + 15;  // windowBits: gzip wrapper, 32 KiB window
    constexpr int32_t kNoFlush = 0;
    constexpr int32_t kOk = 0;
    constexpr int32_t kStreamEnd = 1;
    constexpr int32_t kBufError = -5;
    constexpr std::size_t kMaxOut = 0xFFFFFFFFu;  // avail_out is 32 bits
    if (!gzip_available()) throw ChunkError("gzip: the bundled zlib-ng is not version 2");
    if (size < 18) throw ChunkError("gzip: " + std::to_string(size) + " bytes, too short");
    if (size > 0xFFFFFFFFu) throw ChunkError("gzip: data too large");
    if (max_size > kMaxOut - 1) max_size = kMaxOut - 1;
    // Exact: one byte of room past the chunk, so data that decodes to more is caught. Else
    // start from the last member's ISIZE (the whole size for a single member) and grow.
    std::size_t capacity;
    if (exact) {
        if (expected > max_size) throw ChunkError("gzip: chunk too large");
        capacity = expected + 1;
    } else {
        capacity = static_cast<std::size_t>(src[size - 4]) |
                   (static_cast<std::size_t>(src[size - 3]) << 8) |
                   (static_cast<std::size_t>(src[size - 2]) << 16) |
                   (static_cast<std::size_t>(src[size - 1]) << 24);
        capacity = std::min(std::max<std::size_t>(capacity, 4096), max_size + 1);
    }
    uint8_t* out = dst.get(capacity);
    zng_stream_s zs{};
    if (zng_inflateInit2(&zs, kGzipOnly) != 0) throw std::bad_alloc();
    std::size_t produced = 0;
    std::string error;
    zs.next_in = src;
    zs.avail_in = static_cast<uint32_t>(size);
    for (;;) {
        zs.next_out = out + produced;
        zs.avail_out = static_cast<uint32_t>(capacity - produced);
        const uint32_t in_before = zs.avail_in;
        const int32_t rc = zng_inflate(&zs, kNoFlush);
        const bool moved = zs.avail_in != in_before || zs.avail_out != capacity - produced;
        produced = capacity - zs.avail_out;
        if (rc == kStreamEnd) {
            const uint8_t* rest = zs.next_in;
            const std::size_t left = zs.avail_in;
            if (left == 0 || all_zero(rest, left)) break;
            if (left >= 2 && rest[0] == 0x1f && rest[1] == 0x8b) {  // another member
                zng_inflateReset(&zs);
                continue;
            }
            error = "trailing bytes after the gzip data";
            break;
        }
        if (rc != kOk && rc != kBufError) {
            error = std::string("invalid data") +
                    (zs.msg != nullptr ? std::string(" (") + zs.msg + ")" : "");
            break;
        }
        if (produced == capacity) {
            if (exact || capacity > max_size) {
                error = "data decompresses to more than " +
                        std::to_string(exact ? expected : max_size) + " bytes";
                break;
            }
            // Grow, keeping what is decoded.
            const std::size_t bigger = std::min(capacity * 2, max_size + 1);
            ByteBuffer grown;
            std::memcpy(grown.get(bigger), out, produced);
            dst.swap(grown);
            out = dst.data();
            capacity = bigger;
            continue;
        }
        if (zs.avail_in == 0) {
            error = "truncated data";
            break;
        }
        if (!moved) {
            error = "invalid data";
            break;
        }
    }
    zng_inflateEnd(&zs);
    if (!error.empty()) throw ChunkError("gzip: " + error);
    if (exact && produced != expected)
        throw ChunkError("gzip: decompressed " + std::to_string(produced) + " bytes, expected " +
                         std::to_string(expected));
    return produced;
}

}  // namespace zarrcrop
