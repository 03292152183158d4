#include "decode/block_decode.hpp"

#include <cstring>

#include "codec/bitshuffle.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

namespace {

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
    std::size_t items;  // a multiple of 8
    std::size_t typesize;
    uint8_t* tmp;  // block-sized scratch
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

BlockFilter block_filter(const BloscHeader& h) {
    // Blosc1's precedence: byte shuffle when its flag is set and items have several bytes.
    if (h.byte_shuffle() && h.typesize > 1) return BlockFilter::Byte;
    return h.bit_shuffle() ? BlockFilter::Bit : BlockFilter::None;
}

bool streams_direct(const BloscHeader& h) {
    // Chunks with C-Blosc2's delta filter (zarr never writes it) are left to C-Blosc2.
    return blosc_streams_decodable(h) && !h.delta();
}

void decode_block_to(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b,
                     uint8_t* out) {
    WorkerScratch& s = scratch();
    const auto bytes = static_cast<std::size_t>(blosc_block_bytes(h, b));
    const BlockFilter filter = block_filter(h);
    if (filter == BlockFilter::None) {
        decode_block_streams(h, block, len, b, out, s.zstd());
        return;
    }
    // Undo the shuffle right after decoding, while the block is in cache.
    uint8_t* raw = s.block_raw.get(bytes);
    decode_block_streams(h, block, len, b, raw, s.zstd());
    if (filter == BlockFilter::Byte) {
        byte_unshuffle(raw, out, bytes, h.typesize);
        return;
    }
    blosc1_bitunshuffle(raw, out, bytes, h.typesize, s.block_tmp.get(bytes));
}

void finish_block(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b,
                  const Stitch* stitches, std::size_t n, bool whole) {
    const int64_t lo = static_cast<int64_t>(b) * h.blocksize;
    if (whole) {
        decode_block_to(h, block, len, b, stitches[0].dst + lo);
        return;
    }
    WorkerScratch& s = scratch();
    bool fusable = n >= 1 && n <= kFusedStitches && block_filter(h) == BlockFilter::Bit;
    // Not for streamed outputs (larger than the cache): the fused kernel's plain stores read
    // each output line in first (see PROFILE.md).
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
    const int64_t hi = lo + blosc_block_bytes(h, b);
    for (std::size_t i = 0; i < n; ++i)
        copy_strided_window(decoded_block, lo, hi, stitches[i].src_offset, stitches[i].dst,
                            stitches[i].region);
}

bool own_unshuffle(const BloscHeader& h) {
    return h.bit_shuffle() && !h.byte_shuffle() && h.typesize == 1;
}

void unshuffle_block(const BloscHeader& h, int64_t b, const uint8_t* shuffled, uint8_t* dst) {
    const auto offset = static_cast<std::size_t>(b) * static_cast<std::size_t>(h.blocksize);
    const auto bytes = static_cast<std::size_t>(blosc_block_bytes(h, b));
    blosc1_bitunshuffle(shuffled + offset, dst + offset, bytes, 1, nullptr);  // 1-byte items
}

void decode_blocks(const BloscHeader& h, MutableBytes file, uint8_t* dst, std::size_t chunk_bytes,
                   const std::vector<uint8_t>* skip) {
    WorkerScratch& s = scratch();
    if (!own_unshuffle(h)) {
        if (skip == nullptr)
            s.blosc().decompress(file.data(), file.size(), dst, chunk_bytes);
        else
            s.blosc().decompress_blocks(h, file.data(), file.size(), dst, chunk_bytes, *skip);
        return;
    }
    // Bit-shuffled 1-byte items: clear the flag in our copy of the header so C-Blosc2 stops
    // before its scalar unshuffle, then unshuffle each block ourselves right after it is
    // decoded, while it is still in cache.
    blosc_clear_bitshuffle(file.data(), h);
    uint8_t* shuffled = s.shuffled.get(chunk_bytes);
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    s.block_mask.assign(nblocks, 1);
    for (std::size_t b = 0; b < nblocks; ++b) {
        if (skip != nullptr && (*skip)[b]) continue;
        s.block_mask[b] = 0;
        s.blosc().decompress_blocks(h, file.data(), file.size(), shuffled, chunk_bytes,
                                    s.block_mask);
        s.block_mask[b] = 1;
        unshuffle_block(h, static_cast<int64_t>(b), shuffled, dst);
    }
}

}  // namespace zarrcrop
