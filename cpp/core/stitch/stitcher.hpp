// Strided copies between a decoded chunk and the output buffer. All strides are in bytes and
// may be negative (negative selection steps); dimensions that are contiguous in both buffers
// are merged so that whole rows or planes become single memcpy calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace zarrcrop {

constexpr std::size_t kMaxDims = 64;

// A strided region: ndim (count, source stride, destination stride) triples. The three arrays
// are held elsewhere (a plan's RegionArena, a LocalRegion), so a region costs memory for the
// dimensions it has after simplify(), not for kMaxDims.
struct StridedCopy {
    std::size_t ndim = 0;
    std::size_t itemsize = 1;
    int64_t* counts = nullptr;
    int64_t* src_strides = nullptr;
    int64_t* dst_strides = nullptr;
    // Write the destination with non-temporal stores (copy_strided_window): for outputs
    // larger than the last-level cache, which would only be evicted again; plain stores would
    // also read each line in first.
    bool stream = false;

    // Merges dimensions that are contiguous in both source and destination and drops
    // dimensions of extent 1, in place. Returns the number of elements to copy (0 = nothing).
    int64_t simplify();
    // True when the region is one contiguous run in both buffers (after simplify()).
    bool is_contiguous() const;
};

// Storage for the dimensions of regions of a plan. Blocks are never moved, so regions keep
// pointing at their dimensions while more are added.
class RegionArena {
public:
    RegionArena() = default;
    RegionArena(const RegionArena&) = delete;
    RegionArena& operator=(const RegionArena&) = delete;
    RegionArena(RegionArena&&) = default;
    RegionArena& operator=(RegionArena&&) = default;

    // Points r's arrays at room for `ndim` dimensions (r.ndim is set to ndim).
    void allocate(StridedCopy& r, std::size_t ndim);
    // After r.simplify(): gives back the room r no longer needs, if r was the last allocated.
    void shrink_last(StridedCopy& r);
    void clear();
    // Bytes held.
    std::size_t capacity_bytes() const { return blocks_.size() * kBlock * sizeof(int64_t); }

private:
    static constexpr std::size_t kBlock = 4096;  // int64 values per block (32 KiB)
    std::vector<std::unique_ptr<int64_t[]>> blocks_;
    std::size_t used_ = kBlock;  // values used in the last block
    std::size_t last_ndim_ = 0;
    int64_t* last_ = nullptr;
};

// A region with its dimensions on the stack (temporary regions of up to kMaxDims dimensions).
struct LocalRegion {
    int64_t dims[3 * kMaxDims];
    StridedCopy region;
    explicit LocalRegion(std::size_t ndim, std::size_t itemsize) {
        region.ndim = ndim;
        region.itemsize = itemsize;
        region.counts = dims;
        region.src_strides = dims + kMaxDims;
        region.dst_strides = dims + 2 * kMaxDims;
    }
    LocalRegion(const LocalRegion&) = delete;
    LocalRegion& operator=(const LocalRegion&) = delete;
};

// One destination of a chunk's decoded bytes.
struct Stitch {
    int64_t src_offset = 0;  // bytes from the decoded chunk's start to the first element
    uint8_t* dst = nullptr;  // first destination element
    StridedCopy region;      // simplified (StridedCopy::simplify), at least one element
};

void copy_strided(const uint8_t* src, uint8_t* dst, const StridedCopy& region);
// Copies only the bytes of the region whose source offsets (relative to the region's first
// element, src_offset of it) fall in the window [lo, hi) of the source buffer; `window` points
// at source offset lo. Calling it for consecutive windows that cover the region's source bytes
// copies the whole region, in pieces (a window boundary may split a row or an item).
void copy_strided_window(const uint8_t* window, int64_t lo, int64_t hi, int64_t src_offset,
                         uint8_t* dst, const StridedCopy& region);
// Produces the bytes at window positions [pos, pos + len) (source offset lo + pos) at dst.
using RunCopy = void (*)(const void* ctx, int64_t pos, int64_t len, uint8_t* dst);
// copy_strided_window for a window that is not held as bytes: every contiguous run of the
// region inside [lo, hi) is handed to `copy` (with ctx) instead of being memcpy'd. Regions
// whose innermost dimension is contiguous make one call per row.
void copy_window_runs(int64_t lo, int64_t hi, int64_t src_offset, uint8_t* dst,
                      const StridedCopy& region, RunCopy copy, const void* ctx);
// memcpy with non-temporal stores for the 64-byte lines wholly inside dst (x86; plain memcpy
// elsewhere). Call stream_fence() before the data is handed to another thread.
void stream_copy(uint8_t* dst, const uint8_t* src, std::size_t n);
void stream_fence();
// Outputs of more bytes than this are written with non-temporal stores: the largest CPU cache
// (sysfs: the last-level cache slice of CPU 0), or 32 MiB where unknown.
std::size_t stream_threshold();
// Writes the `itemsize`-byte pattern `value` into every element of the destination region
// (src_strides are ignored).
void fill_strided(uint8_t* dst, const StridedCopy& region, const uint8_t* value);

}  // namespace zarrcrop
