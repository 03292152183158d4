#include "stitch/stitcher.hpp"

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define ZARRCROP_X86 1
#endif

namespace zarrcrop {

namespace {

#if defined(ZARRCROP_X86)
// Copies up to dst's next 64-byte boundary with memcpy; returns the bytes copied.
inline std::size_t align_head(uint8_t* dst, const uint8_t* src) {
    const std::size_t head = (64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63;
    std::memcpy(dst, src, head);
    return head;
}

__attribute__((target("avx2"))) void stream_copy_avx2(uint8_t* dst, const uint8_t* src,
                                                      std::size_t n) {
    std::size_t i = align_head(dst, src);
    for (; i + 64 <= n; i += 64) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), a);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 32), b);
    }
    std::memcpy(dst + i, src + i, n - i);
}

void stream_copy_sse2(uint8_t* dst, const uint8_t* src, std::size_t n) {
    std::size_t i = align_head(dst, src);
    for (; i + 64 <= n; i += 64)
        for (std::size_t k = 0; k < 64; k += 16)
            _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + k),
                             _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + k)));
    std::memcpy(dst + i, src + i, n - i);
}

bool have_avx2() {
    static const bool yes = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return yes;
}
#endif

}  // namespace

void stream_copy(uint8_t* dst, const uint8_t* src, std::size_t n) {
#if defined(ZARRCROP_X86)
    if (n >= 128) {  // at least one whole line
        if (have_avx2())
            stream_copy_avx2(dst, src, n);
        else
            stream_copy_sse2(dst, src, n);
        return;
    }
#endif
    std::memcpy(dst, src, n);
}

void stream_fence() {
#if defined(ZARRCROP_X86)
    _mm_sfence();
#endif
}

std::size_t stream_threshold() {
    // The largest cache of CPU 0 as sysfs reports it (the L3 slice its core complex shares:
    // 32 MiB on this AMD EPYC VM, where sysconf(_SC_LEVEL3_CACHE_SIZE) says 320 MiB, the
    // whole socket's). 32 MiB where unknown.
    static const std::size_t threshold = [] {
        std::size_t best = 0;
        for (int i = 0; i < 8; ++i) {
            const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i);
            std::ifstream size_file(dir + "/size");
            std::string text;
            if (!(size_file >> text) || text.empty()) continue;
            std::size_t value = 0;
            std::size_t pos = 0;
            while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9')
                value = value * 10 + static_cast<std::size_t>(text[pos++] - '0');
            if (pos < text.size() && (text[pos] == 'K' || text[pos] == 'k')) value <<= 10;
            if (pos < text.size() && (text[pos] == 'M' || text[pos] == 'm')) value <<= 20;
            if (value > best) best = value;
        }
        return best > 0 ? best : std::size_t{32} << 20;
    }();
    return threshold;
}

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

void RegionArena::allocate(StridedCopy& r, std::size_t ndim) {
    const std::size_t need = 3 * ndim;
    if (need > kBlock) throw std::invalid_argument("too many dimensions");
    r.ndim = ndim;
    if (need == 0) {  // 0-d: one element, no dimensions
        r.counts = r.src_strides = r.dst_strides = nullptr;
        last_ = nullptr;
        return;
    }
    if (used_ + need > kBlock) {
        blocks_.emplace_back(new int64_t[kBlock]);
        used_ = 0;
    }
    int64_t* p = blocks_.back().get() + used_;
    used_ += need;
    r.counts = p;
    r.src_strides = p + ndim;
    r.dst_strides = p + 2 * ndim;
    last_ = p;
    last_ndim_ = ndim;
}

void RegionArena::shrink_last(StridedCopy& r) {
    if (last_ == nullptr || r.counts != last_ || r.ndim > last_ndim_) return;
    // Move the strides next to the remaining counts, then return the tail.
    const std::size_t n = r.ndim;
    for (std::size_t d = 0; d < n; ++d) last_[n + d] = r.src_strides[d];
    for (std::size_t d = 0; d < n; ++d) last_[2 * n + d] = r.dst_strides[d];
    r.src_strides = last_ + n;
    r.dst_strides = last_ + 2 * n;
    used_ -= 3 * (last_ndim_ - n);
    last_ndim_ = n;
}

void RegionArena::clear() {
    // Keep one block for the next plan; give the rest back.
    if (blocks_.size() > 1) blocks_.resize(1);
    used_ = blocks_.empty() ? kBlock : 0;
    last_ = nullptr;
    last_ndim_ = 0;
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

void copy_row(const uint8_t* src, int64_t ss, uint8_t* dst, int64_t ds, int64_t n, std::size_t item,
              bool stream) {
    const auto it = static_cast<int64_t>(item);
    if (ss == it && ds == it) {
        if (stream)
            stream_copy(dst, src, static_cast<std::size_t>(n) * item);
        else
            std::memcpy(dst, src, static_cast<std::size_t>(n) * item);
        return;
    }
    switch (item) {
        case 1:
            copy_items<1>(src, ss, dst, ds, n);
            return;
        case 2:
            copy_items<2>(src, ss, dst, ds, n);
            return;
        case 4:
            copy_items<4>(src, ss, dst, ds, n);
            return;
        case 8:
            copy_items<8>(src, ss, dst, ds, n);
            return;
        case 16:
            copy_items<16>(src, ss, dst, ds, n);
            return;
        default:
            for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * ds, src + i * ss, item);
    }
}

void copy_rec(const uint8_t* src, uint8_t* dst, const StridedCopy& r, std::size_t d) {
    if (d + 1 == r.ndim) {
        copy_row(src, r.src_strides[d], dst, r.dst_strides[d], r.counts[d], r.itemsize, r.stream);
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

// copy_strided without the closing fence of streamed regions.
void copy_strided_unfenced(const uint8_t* src, uint8_t* dst, const StridedCopy& region) {
    if (region.ndim == 0) {
        std::memcpy(dst, src, region.itemsize);
        return;
    }
    copy_rec(src, dst, region, 0);
}

}  // namespace

void copy_strided(const uint8_t* src, uint8_t* dst, const StridedCopy& region) {
    copy_strided_unfenced(src, dst, region);
    if (region.stream) stream_fence();
}

void fill_strided(uint8_t* dst, const StridedCopy& region, const uint8_t* value) {
    if (region.ndim == 0) {
        std::memcpy(dst, value, region.itemsize);
        return;
    }
    fill_rec(dst, region, 0, value);
}

namespace {

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
    const int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

struct Window {
    const uint8_t* base;  // source offset lo
    int64_t lo;
    int64_t hi;
    const StridedCopy* r;
    RunCopy copy = nullptr;  // null: memcpy from base
    const void* ctx = nullptr;
    // Per dimension d: the lowest source offset and one past the highest byte of the
    // sub-region spanned by dimensions d.. (relative to its first element).
    int64_t span_lo[kMaxDims + 1];
    int64_t span_hi[kMaxDims + 1];

    // Copies the part of source run [a, a + len) inside the window to dst (dst = a's target).
    void run(int64_t a, int64_t len, uint8_t* dst) const {
        const int64_t s = a > lo ? a : lo;
        const int64_t e = a + len < hi ? a + len : hi;
        if (s >= e) return;
        if (copy != nullptr)
            copy(ctx, s - lo, e - s, dst + (s - a));
        else if (r->stream)
            stream_copy(dst + (s - a), base + (s - lo), static_cast<std::size_t>(e - s));
        else
            std::memcpy(dst + (s - a), base + (s - lo), static_cast<std::size_t>(e - s));
    }

    void rec(std::size_t d, int64_t off, uint8_t* dst) const {
        const StridedCopy& c = *r;
        const auto item = static_cast<int64_t>(c.itemsize);
        if (off + span_hi[d] <= lo || off + span_lo[d] >= hi) return;  // disjoint
        if (d + 1 == c.ndim && c.src_strides[d] == item && c.dst_strides[d] == item) {
            run(off, c.counts[d] * item, dst);  // one contiguous row, whole or cut
            return;
        }
        if (copy == nullptr && off + span_lo[d] >= lo && off + span_hi[d] <= hi) {  // wholly inside
            StridedCopy sub = c;  // dimensions d.. of the region
            sub.ndim = c.ndim - d;
            sub.counts += d;
            sub.src_strides += d;
            sub.dst_strides += d;
            copy_strided_unfenced(base + (off - lo), dst, sub);
            return;
        }
        if (d == c.ndim) {  // one item cut by the window
            run(off, item, dst);
            return;
        }
        const int64_t n = c.counts[d];
        const int64_t ss = c.src_strides[d];
        const int64_t ds = c.dst_strides[d];
        int64_t first = 0;
        int64_t last = n - 1;
        if (ss > 0) {  // only the sub-regions that can meet the window
            // child i meets it when off + i*ss + span_hi[d+1] > lo and off + i*ss + span_lo[d+1] <
            // hi
            const int64_t f = floor_div(lo - off - span_hi[d + 1], ss) + 1;
            const int64_t l = floor_div(hi - off - span_lo[d + 1] - 1, ss);
            first = f > 0 ? f : 0;
            last = l < n - 1 ? l : n - 1;
        }
        for (int64_t i = first; i <= last; ++i) rec(d + 1, off + i * ss, dst + i * ds);
    }
};

// Copies the region's bytes inside [lo, hi): from `base` (source offset lo), or through
// `copy` when it is set.
void walk_window(int64_t lo, int64_t hi, int64_t src_offset, uint8_t* dst,
                 const StridedCopy& region, const uint8_t* base, RunCopy copy, const void* ctx) {
    if (hi <= lo) return;
    Window w;
    w.base = base;
    w.lo = lo;
    w.hi = hi;
    w.r = &region;
    w.copy = copy;
    w.ctx = ctx;
    const std::size_t nd = region.ndim;
    w.span_lo[nd] = 0;
    w.span_hi[nd] = static_cast<int64_t>(region.itemsize);
    for (std::size_t d = nd; d-- > 0;) {
        const int64_t reach = (region.counts[d] - 1) * region.src_strides[d];
        w.span_lo[d] = w.span_lo[d + 1] + (reach < 0 ? reach : 0);
        w.span_hi[d] = w.span_hi[d + 1] + (reach > 0 ? reach : 0);
    }
    w.rec(0, src_offset, dst);
}

}  // namespace

void copy_strided_window(const uint8_t* window, int64_t lo, int64_t hi, int64_t src_offset,
                         uint8_t* dst, const StridedCopy& region) {
    walk_window(lo, hi, src_offset, dst, region, window, nullptr, nullptr);
    if (region.stream) stream_fence();  // before the task reports done to another thread
}

void copy_window_runs(int64_t lo, int64_t hi, int64_t src_offset, uint8_t* dst,
                      const StridedCopy& region, RunCopy copy, const void* ctx) {
    walk_window(lo, hi, src_offset, dst, region, nullptr, copy, ctx);
}

}  // namespace zarrcrop
