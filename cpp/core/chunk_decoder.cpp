#include "chunk_decoder.hpp"

#include <chrono>
#include <cstring>
#include <memory>

#include "bitshuffle.hpp"
#include "blosc_decoder.hpp"
#include "errors.hpp"

namespace zarrcrop {

namespace {

// Per-thread scratch, reused across chunks and reads: no allocation on the hot path once warm.
struct WorkerScratch {
    std::vector<uint8_t> file;
    std::vector<uint8_t> decoded;
    std::vector<uint8_t> shuffled;  // blocks still bit-shuffled (see bitshuffle.hpp)
    std::vector<uint8_t> skip;
    std::unique_ptr<BloscDecoder> decoder;

    BloscDecoder& blosc() {
        if (!decoder) decoder = std::make_unique<BloscDecoder>();
        return *decoder;
    }
};

WorkerScratch& scratch() {
    thread_local WorkerScratch s;
    return s;
}

void mark_span(int64_t lo, int64_t hi, int64_t blocksize, std::vector<uint8_t>& need) {
    // [lo, hi) in bytes, hi > lo.
    const auto first = static_cast<std::size_t>(lo / blocksize);
    const auto last = static_cast<std::size_t>((hi - 1) / blocksize);
    for (std::size_t b = first; b <= last && b < need.size(); ++b) need[b] = 1;
}

void mark_rows(const StridedCopy& r, std::size_t d, int64_t offset, int64_t blocksize,
               std::vector<uint8_t>& need) {
    const auto item = static_cast<int64_t>(r.itemsize);
    if (d + 1 >= r.ndim) {
        int64_t lo = offset;
        int64_t hi = offset;
        if (r.ndim > 0) {
            const int64_t far = offset + (r.counts[d] - 1) * r.src_strides[d];
            lo = std::min(offset, far);
            hi = std::max(offset, far);
        }
        mark_span(lo, hi + item, blocksize, need);
        return;
    }
    for (int64_t i = 0; i < r.counts[d]; ++i)
        mark_rows(r, d + 1, offset + i * r.src_strides[d], blocksize, need);
}

}  // namespace

void mark_needed_blocks(const Stitch& stitch, int64_t blocksize, std::vector<uint8_t>& need) {
    mark_rows(stitch.region, 0, stitch.src_offset, blocksize, need);
}

ChunkDecoder::ChunkDecoder(const ArraySpec& spec, const FileChunkSource& source,
                           ChunkCache* cache)
    : spec_(spec), source_(source), cache_(cache), chunk_bytes_(spec.chunk_nbytes()) {}

void ChunkDecoder::process(const int64_t* coords, const Stitch* stitches, std::size_t n) const {
    const std::string key = chunk_key(spec_.keys, coords, spec_.ndim());
    WorkerScratch& s = scratch();
    const bool caching = cache_ != nullptr && cache_->enabled();
    try {
        ChunkBytes cached = caching ? cache_->get(key) : nullptr;
        if (!cached) {
            const std::size_t max_file =
                chunk_bytes_ + (spec_.compressor == Compressor::Blosc ? 16 : 0);
            if (!source_.read(key, s.file, max_file)) {
                for (std::size_t i = 0; i < n; ++i)
                    fill_strided(stitches[i].dst, stitches[i].region, spec_.fill_value.data());
                return;
            }
            if (!caching) {
                decode_and_stitch(s.file, stitches, n);
                return;
            }
            cached = decode_whole(s.file);
            cache_->put(key, cached);
        }
        for (std::size_t i = 0; i < n; ++i)
            copy_strided(cached->data() + stitches[i].src_offset, stitches[i].dst,
                         stitches[i].region);
    } catch (const ChunkError& e) {
        throw ChunkError("array '" + spec_.name + "', chunk '" + key + "': " + e.what());
    } catch (const ChunkIoError& e) {
        throw ChunkIoError("array '" + spec_.name + "', chunk '" + key + "': " + e.what(),
                           e.error_number());
    }
}

ChunkBytes ChunkDecoder::decode_whole(std::vector<uint8_t>& file) const {
    auto out = std::make_shared<std::vector<uint8_t>>(chunk_bytes_);
    if (spec_.compressor == Compressor::None) {
        if (file.size() != chunk_bytes_)
            throw ChunkError("uncompressed chunk has " + std::to_string(file.size()) +
                             " bytes, the chunk shape needs " + std::to_string(chunk_bytes_));
        std::memcpy(out->data(), file.data(), chunk_bytes_);
        return out;
    }
    const BloscHeader h = validate_blosc_chunk(file.data(), file.size(), chunk_bytes_,
                                               spec_.itemsize);
    if (h.memcpyed())
        std::memcpy(out->data(), file.data() + 16, chunk_bytes_);
    else
        decode_blocks(h, file, out->data(), nullptr);
    return out;
}

void ChunkDecoder::decode_blocks(const BloscHeader& h, std::vector<uint8_t>& file, uint8_t* dst,
                                 const std::vector<uint8_t>* skip) const {
    WorkerScratch& s = scratch();
    // Bit-shuffled 1-byte items: let C-Blosc2 stop before its scalar unshuffle by clearing the
    // flag in our copy of the header, and unshuffle the decoded blocks ourselves.
    const bool own_unshuffle = (h.flags & 0x04) != 0 && (h.flags & 0x01) == 0 && h.typesize == 1;
    uint8_t* target = dst;
    if (own_unshuffle) {
        file[2] = static_cast<uint8_t>(h.flags & ~0x04);
        if (s.shuffled.size() < chunk_bytes_) s.shuffled.resize(chunk_bytes_);
        target = s.shuffled.data();
    }
    if (skip == nullptr)
        s.blosc().decompress(file.data(), file.size(), target, chunk_bytes_);
    else
        s.blosc().decompress_blocks(h, file.data(), file.size(), target, chunk_bytes_, *skip);
    if (!own_unshuffle) return;
    const int32_t nblocks = h.nblocks();
    for (int32_t b = 0; b < nblocks; ++b) {
        if (skip != nullptr && (*skip)[static_cast<std::size_t>(b)]) continue;
        const auto offset = static_cast<std::size_t>(b) * static_cast<std::size_t>(h.blocksize);
        const auto bytes = static_cast<std::size_t>(
            (b == nblocks - 1) ? h.nbytes - b * h.blocksize : h.blocksize);
        // Blosc1 bitshuffles a block only when its item count is a multiple of 8.
        if (bytes % 8 == 0)
            bitunshuffle_u8(target + offset, dst + offset, bytes);
        else
            std::memcpy(dst + offset, target + offset, bytes);
    }
}

void ChunkDecoder::decode_and_stitch(std::vector<uint8_t>& file, const Stitch* stitches,
                                     std::size_t n) const {
    const uint8_t* chunk = decode_needed(file, stitches, n);
    if (chunk == nullptr) return;  // decoded straight into the destination
    for (std::size_t i = 0; i < n; ++i)
        copy_strided(chunk + stitches[i].src_offset, stitches[i].dst, stitches[i].region);
}

const uint8_t* ChunkDecoder::decode_needed(std::vector<uint8_t>& file,
                                           const Stitch* stitches, std::size_t n) const {
    if (spec_.compressor == Compressor::None) {
        if (file.size() != chunk_bytes_)
            throw ChunkError("uncompressed chunk has " + std::to_string(file.size()) +
                             " bytes, the chunk shape needs " + std::to_string(chunk_bytes_));
        return file.data();
    }
    const BloscHeader h = validate_blosc_chunk(file.data(), file.size(), chunk_bytes_,
                                               spec_.itemsize);
    // Incompressible data is stored raw after the header: stitching copies only what is needed.
    if (h.memcpyed()) return file.data() + 16;

    WorkerScratch& s = scratch();
    if (n == 1 && stitches[0].src_offset == 0 && stitches[0].region.is_contiguous()) {
        int64_t elements = 1;
        for (std::size_t d = 0; d < stitches[0].region.ndim; ++d)
            elements *= stitches[0].region.counts[d];
        if (static_cast<std::size_t>(elements) * spec_.itemsize == chunk_bytes_) {
            // The destination holds the whole chunk as one run: decode straight into it.
            decode_blocks(h, file, stitches[0].dst, nullptr);
            return nullptr;
        }
    }
    // Decode only the blocks some destination reads.
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    s.skip.assign(nblocks, 0);
    std::vector<uint8_t>& need = s.skip;  // reuse: first mark needed, then invert
    for (std::size_t i = 0; i < n; ++i) mark_needed_blocks(stitches[i], h.blocksize, need);
    std::size_t needed = 0;
    for (auto& b : need) {
        needed += b;
        b = static_cast<uint8_t>(b ^ 1);  // now: 1 = skip
    }
    if (s.decoded.size() < chunk_bytes_) s.decoded.resize(chunk_bytes_);
    decode_blocks(h, file, s.decoded.data(), needed == nblocks ? nullptr : &s.skip);
    return s.decoded.data();
}

double ChunkDecoder::time_decode(const int64_t* coords, const Stitch* stitches,
                                 std::size_t n) const {
    const std::string key = chunk_key(spec_.keys, coords, spec_.ndim());
    std::vector<uint8_t> file;
    if (!source_.read(key, file, chunk_bytes_ + 16)) return 0.0;
    const auto t0 = std::chrono::steady_clock::now();
    decode_needed(file, stitches, n);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace zarrcrop
