#include "decode/codec_chain.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "codec/codecs.hpp"
#include "errors.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

namespace {

template <typename T, typename Swap>
void swap_units(uint8_t* data, std::size_t size, Swap swap) {
    for (std::size_t i = 0; i + sizeof(T) <= size; i += sizeof(T)) {
        T v;
        std::memcpy(&v, data + i, sizeof(T));
        v = swap(v);
        std::memcpy(data + i, &v, sizeof(T));
    }
}

}  // namespace

void swap_byte_order(uint8_t* data, std::size_t size, std::size_t width) {
    switch (width) {
        case 2:
            return swap_units<uint16_t>(data, size,
                                        [](uint16_t v) { return __builtin_bswap16(v); });
        case 4:
            return swap_units<uint32_t>(data, size,
                                        [](uint32_t v) { return __builtin_bswap32(v); });
        case 8:
            return swap_units<uint64_t>(data, size,
                                        [](uint64_t v) { return __builtin_bswap64(v); });
        default:
            for (std::size_t i = 0; i + width <= size; i += width)
                std::reverse(data + i, data + i + width);
    }
}

uint8_t* decode_chain(const ArraySpec& spec, std::size_t chunk_bytes, MutableBytes file,
                      std::size_t want, std::size_t max_bytes) {
    WorkerScratch& s = scratch();
    uint8_t* data = file.data();
    std::size_t size = file.size();
    int next = 0;  // ping-pong buffer to write next
    for (std::size_t i = spec.codecs.size(); i-- > 0;) {
        const bool last = i == 0;  // this step yields the raw chunk bytes
        switch (spec.codecs[i]) {
            case Codec::Crc32c:
                size = check_crc32c(data, size);
                break;
            case Codec::Zstd: {
                ByteBuffer& out = s.chain[next];
                if (last && want < chunk_bytes) {
                    // Only the first `want` bytes are needed: a zstd frame decodes in order,
                    // so stop there (the rest of the chunk's content is left undecoded).
                    uint8_t* prefix = out.get(chunk_bytes);
                    if (s.zstd().decompress_prefix(data, size, prefix, chunk_bytes, want)) {
                        data = prefix;
                        size = chunk_bytes;
                        next ^= 1;
                        break;
                    }
                }
                size = s.zstd().decompress(data, size, out, chunk_bytes, last, max_bytes);
                data = out.data();
                next ^= 1;
                break;
            }
            case Codec::Gzip: {
                ByteBuffer& out = s.chain[next];
                size = gunzip(data, size, out, chunk_bytes, last, max_bytes);
                data = out.data();
                next ^= 1;
                break;
            }
            case Codec::Blosc: {  // always the first codec (validated), so the last decoded
                const BloscHeader h = validate_blosc_chunk(data, size, chunk_bytes);
                if (h.memcpyed()) {
                    data += 16;
                    size = chunk_bytes;
                    break;
                }
                uint8_t* decoded = s.decoded.get(chunk_bytes);
                decode_blocks(h, MutableBytes(data, size), decoded, chunk_bytes, nullptr);
                data = decoded;
                size = chunk_bytes;
                break;
            }
        }
    }
    if (size != chunk_bytes)
        throw ChunkError("decoded chunk has " + std::to_string(size) +
                         " bytes, the chunk shape needs " + std::to_string(chunk_bytes));
    if (spec.swap_width > 1) {
        const std::size_t w = spec.swap_width;
        // Only the decoded prefix, in whole units (want may be SIZE_MAX: everything).
        const std::size_t upto = want >= size ? size : std::min(size, (want / w + 1) * w);
        swap_byte_order(data, upto, w);
    }
    return data;
}

}  // namespace zarrcrop
