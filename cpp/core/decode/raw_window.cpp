#include "decode/raw_window.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "decode/block_plan.hpp"
#include "runtime/worker_scratch.hpp"

namespace zarrcrop {

void stream_raw(const ChunkFile& file, std::size_t data_offset, std::size_t chunk_bytes,
                const Stitch* stitches, std::size_t n) {
    constexpr std::size_t kGranule = 4096;
    // Windows of half a typical L2 (sizes measured: PROFILE.md).
    constexpr std::size_t kWindow = 512 * 1024;
    WorkerScratch& s = scratch();
    const std::size_t granules = (chunk_bytes + kGranule - 1) / kGranule;
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
        const std::size_t hi = std::min(e * kGranule, chunk_bytes);
        for (std::size_t lo = g * kGranule; lo < hi; lo += kWindow) {
            const std::size_t end = std::min(lo + kWindow, hi);
            file.read_at(data_offset + lo, end - lo, window);
            for (std::size_t i = 0; i < n; ++i)
                copy_strided_window(window, static_cast<int64_t>(lo), static_cast<int64_t>(end),
                                    stitches[i].src_offset, stitches[i].dst, stitches[i].region);
        }
        g = e;
    }
}

}  // namespace zarrcrop
