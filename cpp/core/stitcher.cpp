#include "stitcher.hpp"

#include <cstring>

namespace zarrcrop {

int64_t StridedCopy::simplify() {
    std::size_t n = 0;
    int64_t total = 1;
    for (std::size_t d = 0; d < ndim; ++d) {
        total *= counts[d];
        if (counts[d] == 1) continue;
        counts[n] = counts[d];
        src_strides[n] = src_strides[d];
        dst_strides[n] = dst_strides[d];
        ++n;
    }
    ndim = n;
    if (total == 0) return 0;
    // Merge from the innermost dimension outwards.
    std::size_t out = 0;
    for (std::size_t d = 0; d < ndim; ++d) {
        if (out > 0) {
            const std::size_t p = out - 1;
            // Dimension p (outer) followed by d (inner) merge when the outer stride equals
            // inner count * inner stride in both buffers.
            if (src_strides[p] == counts[d] * src_strides[d] &&
                dst_strides[p] == counts[d] * dst_strides[d]) {
                counts[p] *= counts[d];
                src_strides[p] = src_strides[d];
                dst_strides[p] = dst_strides[d];
                continue;
            }
        }
        counts[out] = counts[d];
        src_strides[out] = src_strides[d];
        dst_strides[out] = dst_strides[d];
        ++out;
    }
    ndim = out;
    return total;
}

bool StridedCopy::is_contiguous() const {
    const int64_t item = static_cast<int64_t>(itemsize);
    return ndim == 0 || (ndim == 1 && src_strides[0] == item && dst_strides[0] == item);
}

namespace {

template <std::size_t N>
void copy_items(const uint8_t* src, int64_t ss, uint8_t* dst, int64_t ds, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        std::memcpy(dst, src, N);
        src += ss;
        dst += ds;
    }
}

void copy_row(const uint8_t* src, int64_t ss, uint8_t* dst, int64_t ds, int64_t n,
              std::size_t item) {
    const auto it = static_cast<int64_t>(item);
    if (ss == it && ds == it) {
        std::memcpy(dst, src, static_cast<std::size_t>(n) * item);
        return;
    }
    switch (item) {
        case 1: copy_items<1>(src, ss, dst, ds, n); return;
        case 2: copy_items<2>(src, ss, dst, ds, n); return;
        case 4: copy_items<4>(src, ss, dst, ds, n); return;
        case 8: copy_items<8>(src, ss, dst, ds, n); return;
        case 16: copy_items<16>(src, ss, dst, ds, n); return;
        default:
            for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * ds, src + i * ss, item);
    }
}

void copy_rec(const uint8_t* src, uint8_t* dst, const StridedCopy& r, std::size_t d) {
    if (d + 1 == r.ndim) {
        copy_row(src, r.src_strides[d], dst, r.dst_strides[d], r.counts[d], r.itemsize);
        return;
    }
    for (int64_t i = 0; i < r.counts[d]; ++i)
        copy_rec(src + i * r.src_strides[d], dst + i * r.dst_strides[d], r, d + 1);
}

void fill_row(uint8_t* dst, int64_t ds, int64_t n, std::size_t item, const uint8_t* value) {
    bool uniform = true;
    for (std::size_t b = 1; b < item; ++b) uniform = uniform && value[b] == value[0];
    if (uniform && ds == static_cast<int64_t>(item)) {
        std::memset(dst, value[0], static_cast<std::size_t>(n) * item);
        return;
    }
    for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * ds, value, item);
}

void fill_rec(uint8_t* dst, const StridedCopy& r, std::size_t d, const uint8_t* value) {
    if (d + 1 == r.ndim) {
        fill_row(dst, r.dst_strides[d], r.counts[d], r.itemsize, value);
        return;
    }
    for (int64_t i = 0; i < r.counts[d]; ++i) fill_rec(dst + i * r.dst_strides[d], r, d + 1, value);
}

}  // namespace

void copy_strided(const uint8_t* src, uint8_t* dst, const StridedCopy& region) {
    if (region.ndim == 0) {
        std::memcpy(dst, src, region.itemsize);
        return;
    }
    copy_rec(src, dst, region, 0);
}

void fill_strided(uint8_t* dst, const StridedCopy& region, const uint8_t* value) {
    if (region.ndim == 0) {
        std::memcpy(dst, value, region.itemsize);
        return;
    }
    fill_rec(dst, region, 0, value);
}

}  // namespace zarrcrop
