#include "decode/block_plan.hpp"

#include <algorithm>
#include <string>

#include "errors.hpp"

namespace zarrcrop {

namespace {

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

}  // namespace

void mark_needed_blocks(const Stitch& stitch, int64_t blocksize, std::vector<uint8_t>& need) {
    Span spans[kMaxDims + 1];
    region_spans(stitch.region, blocksize, spans);
    mark_rows(stitch.region, spans, 0, stitch.src_offset, blocksize, need);
}

std::size_t plan_blocks(const BloscHeader& h, const Stitch* stitches, std::size_t n, bool whole,
                        std::vector<uint8_t>& skip) {
    const auto nblocks = static_cast<std::size_t>(h.nblocks());
    skip.assign(nblocks, whole ? 0 : 1);
    if (whole) return nblocks;
    std::vector<uint8_t>& need = skip;  // first mark needed blocks, then invert
    std::fill(need.begin(), need.end(), 0);
    for (std::size_t i = 0; i < n; ++i) mark_needed_blocks(stitches[i], h.blocksize, need);
    std::size_t needed = 0;
    for (auto& b : need) {
        needed += b;
        b = static_cast<uint8_t>(b ^ 1);  // now: 1 = skip
    }
    return needed;
}

bool whole_chunk_destination(const Stitch* stitches, std::size_t n, std::size_t itemsize,
                             std::size_t chunk_bytes) {
    if (n != 1 || stitches[0].src_offset != 0 || !stitches[0].region.is_contiguous()) return false;
    int64_t elements = 1;
    for (std::size_t d = 0; d < stitches[0].region.ndim; ++d)
        elements *= stitches[0].region.counts[d];
    return static_cast<std::size_t>(elements) * itemsize == chunk_bytes;
}

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

std::vector<ByteRange> needed_ranges(const std::vector<BlockExtent>& extents,
                                     const std::vector<uint8_t>& skip, bool all) {
    std::vector<ByteRange> ranges;
    for (std::size_t b = 0; b < extents.size(); ++b)
        if (all || !skip[b]) ranges.push_back(ByteRange{extents[b].start, extents[b].end});
    return ranges;
}

}  // namespace zarrcrop
