// Benchmark support (CropReader::decode_seconds): the decode stages composed without the I/O
// and without stitching, timed in thread CPU seconds. Not on the read path.
#include <ctime>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <emmintrin.h>
#endif

#include "codec/blosc_decoder.hpp"
#include "decode/block_plan.hpp"
#include "decode/chunk_decoder.hpp"
#include "decode/codec_chain.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

namespace {

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

}  // namespace

double ChunkDecoder::decode_seconds(const int64_t* coords, const Stitch* stitches,
                                    std::size_t n) const {
    std::vector<uint8_t> file;
    {
        ByteBuffer buf;
        std::size_t size = 0;
        if (!read_whole(coords, buf, size)) return 0.0;
        file.assign(buf.data(), buf.data() + size);
    }
    // A read finds the bytes in memory (the page cache), not in the CPU caches where the read
    // above left them: decode them from memory too (PROFILE.md).
    evict_from_cpu_caches(file.data(), file.size());
    // Thread CPU time, not wall time: on a shared machine the bound should not include time
    // this thread spent waiting for a core.
    const double t0 = thread_cpu_seconds();
    MutableBytes bytes(file);
    if (spec_.compressor == Compressor::Chain) {
        decode_chain(spec_, chunk_bytes_, bytes, needed_end(stitches, n, spec_.itemsize),
                     max_file_bytes());
    } else if (spec_.compressor == Compressor::None) {
        // Raw chunks are "decoded" by copying the needed bytes out.
        check_uncompressed_size(bytes.size());
        stitch_all(bytes.data(), stitches, n);
    } else {
        const BloscHeader h = validate_blosc_header(bytes.data(), bytes.size(), chunk_bytes_);
        if (h.memcpyed()) {
            stitch_all(bytes.data() + 16, stitches, n);
        } else {
            const std::vector<BlockExtent> extents =
                blosc_block_extents(h, bytes.data(), bytes.size());
            validate_blosc_streams(h, bytes.data(), extents, nullptr);
            const bool whole = whole_chunk_destination(stitches, n, spec_.itemsize, chunk_bytes_);
            const std::size_t needed = plan_blocks(h, stitches, n, whole, scratch().skip);
            decode_planned(h, bytes, extents, stitches, /*n=*/0, whole, needed);
        }
    }
    return thread_cpu_seconds() - t0;
}

}  // namespace zarrcrop
