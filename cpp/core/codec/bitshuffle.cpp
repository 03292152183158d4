#include "codec/bitshuffle.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace zarrcrop {

namespace {

// Transposes the 8x8 bit matrix held in x (bit 8*r + c = row r, column c).
inline uint64_t transpose8x8(uint64_t x) {
    uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
    x = x ^ t ^ (t << 28);
    return x;
}

// One group: byte k of the gathered word is plane k's byte for items 8g..8g+7; after the
// transpose, byte i holds item 8g+i (bit k from plane k).
inline void unshuffle_groups(const uint8_t* src, uint8_t* dst, std::size_t planes,
                             std::size_t first, std::size_t last) {
    for (std::size_t g = first; g < last; ++g) {
        uint64_t x = 0;
        for (std::size_t k = 0; k < 8; ++k)
            x |= static_cast<uint64_t>(src[k * planes + g]) << (8 * k);
        x = transpose8x8(x);
        std::memcpy(dst + 8 * g, &x, 8);
    }
}

#if defined(__SSE2__)
inline __m128i transpose_lanes(__m128i x) {
    const __m128i m1 = _mm_set1_epi64x(0x00AA00AA00AA00AALL);
    const __m128i m2 = _mm_set1_epi64x(0x0000CCCC0000CCCCLL);
    const __m128i m3 = _mm_set1_epi64x(0x00000000F0F0F0F0LL);
    __m128i t = _mm_and_si128(_mm_xor_si128(x, _mm_srli_epi64(x, 7)), m1);
    x = _mm_xor_si128(x, _mm_xor_si128(t, _mm_slli_epi64(t, 7)));
    t = _mm_and_si128(_mm_xor_si128(x, _mm_srli_epi64(x, 14)), m2);
    x = _mm_xor_si128(x, _mm_xor_si128(t, _mm_slli_epi64(t, 14)));
    t = _mm_and_si128(_mm_xor_si128(x, _mm_srli_epi64(x, 28)), m3);
    x = _mm_xor_si128(x, _mm_xor_si128(t, _mm_slli_epi64(t, 28)));
    return x;
}

// Gathers, for 16 groups of 8 items, the 8 plane bytes of each group into one 64-bit lane:
// q[i] holds groups 2i and 2i+1, lane byte m taken from p[m].
inline void gather_groups(const __m128i* p, __m128i* q) {
    const __m128i a01 = _mm_unpacklo_epi8(p[0], p[1]);
    const __m128i b01 = _mm_unpackhi_epi8(p[0], p[1]);
    const __m128i a23 = _mm_unpacklo_epi8(p[2], p[3]);
    const __m128i b23 = _mm_unpackhi_epi8(p[2], p[3]);
    const __m128i a45 = _mm_unpacklo_epi8(p[4], p[5]);
    const __m128i b45 = _mm_unpackhi_epi8(p[4], p[5]);
    const __m128i a67 = _mm_unpacklo_epi8(p[6], p[7]);
    const __m128i b67 = _mm_unpackhi_epi8(p[6], p[7]);
    const __m128i c0 = _mm_unpacklo_epi16(a01, a23);  // groups 0-3, bytes 0-3
    const __m128i c1 = _mm_unpackhi_epi16(a01, a23);  // groups 4-7
    const __m128i c2 = _mm_unpacklo_epi16(b01, b23);  // groups 8-11
    const __m128i c3 = _mm_unpackhi_epi16(b01, b23);  // groups 12-15
    const __m128i d0 = _mm_unpacklo_epi16(a45, a67);  // same groups, bytes 4-7
    const __m128i d1 = _mm_unpackhi_epi16(a45, a67);
    const __m128i d2 = _mm_unpacklo_epi16(b45, b67);
    const __m128i d3 = _mm_unpackhi_epi16(b45, b67);
    q[0] = _mm_unpacklo_epi32(c0, d0);
    q[1] = _mm_unpackhi_epi32(c0, d0);
    q[2] = _mm_unpacklo_epi32(c1, d1);
    q[3] = _mm_unpackhi_epi32(c1, d1);
    q[4] = _mm_unpacklo_epi32(c2, d2);
    q[5] = _mm_unpackhi_epi32(c2, d2);
    q[6] = _mm_unpacklo_epi32(c3, d3);
    q[7] = _mm_unpackhi_epi32(c3, d3);
}

// 16 groups (128 items) per iteration, bit transposes with shifts and masks (SSE2).
void unshuffle_sse2(const uint8_t* src, uint8_t* dst, std::size_t planes, std::size_t groups) {
    std::size_t g = 0;
    for (; g + 16 <= groups; g += 16) {
        __m128i p[8];
        __m128i q[8];
        for (std::size_t k = 0; k < 8; ++k)
            p[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k * planes + g));
        gather_groups(p, q);
        for (std::size_t i = 0; i < 8; ++i)
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 8 * g + 16 * i),
                             transpose_lanes(q[i]));
    }
    unshuffle_groups(src, dst, planes, g, groups);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ZARRCROP_HAVE_GFNI 1
// With GFNI one affine instruction transposes each 8x8 bit matrix: result byte c, bit i =
// parity(A.byte[7 - i] & x.byte[c]); with x.byte[c] = 1 << c and A = the planes in reverse
// order, that is bit c of plane i.
__attribute__((target("gfni,sse4.1"))) void unshuffle_gfni(const uint8_t* src, uint8_t* dst,
                                                           std::size_t planes, std::size_t groups) {
    const __m128i unit = _mm_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    std::size_t g = 0;
    for (; g + 16 <= groups; g += 16) {
        __m128i p[8];
        __m128i q[8];
        for (std::size_t k = 0; k < 8; ++k)
            p[7 - k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k * planes + g));
        gather_groups(p, q);
        for (std::size_t i = 0; i < 8; ++i)
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 8 * g + 16 * i),
                             _mm_gf2p8affine_epi64_epi8(unit, q[i], 0));
    }
    unshuffle_groups(src, dst, planes, g, groups);
}

bool cpu_has_gfni() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("gfni") != 0;
    }();
    return has;
}
#endif
#endif

// Items [8g, 8g + 128) of a bit-shuffled block (planes bytes per plane, g + 16 <= planes) to
// out: one 16-group step of the kernels above.
using UnitFn = void (*)(const uint8_t* src, std::size_t planes, std::size_t g, uint8_t* out);

void unit_portable(const uint8_t* src, std::size_t planes, std::size_t g, uint8_t* out) {
    unshuffle_groups(src + g, out, planes, 0, 16);
}

#if defined(__SSE2__)
void unit_sse2(const uint8_t* src, std::size_t planes, std::size_t g, uint8_t* out) {
    unshuffle_sse2(src + g, out, planes, 16);
}
#endif

#if defined(ZARRCROP_HAVE_GFNI)
__attribute__((target("gfni,sse4.1"))) void unit_gfni(const uint8_t* src, std::size_t planes,
                                                      std::size_t g, uint8_t* out) {
    unshuffle_gfni(src + g, out, planes, 16);
}
#endif

UnitFn best_unit() {
#if defined(ZARRCROP_HAVE_GFNI)
    if (cpu_has_gfni()) return unit_gfni;
#endif
#if defined(__SSE2__)
    return unit_sse2;
#else
    return unit_portable;
#endif
}

void unshuffle_range(UnitFn unit, const uint8_t* src, std::size_t planes, std::size_t a,
                     std::size_t b, uint8_t* dst) {
    if (b <= a) return;
    if (planes < 16) {  // too small for a 16-group step: whole groups, one at a time
        for (std::size_t g = a / 8; 8 * g < b; ++g) {
            uint8_t tmp[8];
            unshuffle_groups(src + g, tmp, planes, 0, 1);
            const std::size_t lo = std::max(a, 8 * g);
            const std::size_t hi = std::min(b, 8 * g + 8);
            std::memcpy(dst + (lo - a), tmp + (lo - 8 * g), hi - lo);
        }
        return;
    }
    std::size_t pos = a;
    while (pos < b) {
        if (pos % 8 == 0 && pos + 128 <= b && pos / 8 + 16 <= planes) {
            unit(src, planes, pos / 8, dst + (pos - a));  // a whole step: straight to dst
            pos += 128;
            continue;
        }
        // A cut step (start or end of the range): through a small buffer.
        const std::size_t g = std::min(pos / 8, planes - 16);
        uint8_t tmp[128];
        unit(src, planes, g, tmp);
        const std::size_t end = std::min(b, 8 * g + 128);
        std::memcpy(dst + (pos - a), tmp + (pos - 8 * g), end - pos);
        pos = end;
    }
}

}  // namespace

bool bitunshuffle_u8_with(const char* impl, const uint8_t* src, uint8_t* dst, std::size_t n) {
    const std::string name = impl;
    if (name == "portable") {
        unshuffle_groups(src, dst, n / 8, 0, n / 8);
        return true;
    }
#if defined(__SSE2__)
    if (name == "sse2") {
        unshuffle_sse2(src, dst, n / 8, n / 8);
        return true;
    }
#endif
#if defined(ZARRCROP_HAVE_GFNI)
    if (name == "gfni" && cpu_has_gfni()) {
        unshuffle_gfni(src, dst, n / 8, n / 8);
        return true;
    }
#endif
    return false;
}

void bitunshuffle_u8(const uint8_t* src, uint8_t* dst, std::size_t n) {
#if defined(ZARRCROP_HAVE_GFNI)
    if (cpu_has_gfni()) {
        unshuffle_gfni(src, dst, n / 8, n / 8);
        return;
    }
#endif
#if defined(__SSE2__)
    unshuffle_sse2(src, dst, n / 8, n / 8);
#else
    unshuffle_groups(src, dst, n / 8, 0, n / 8);
#endif
}

void bitunshuffle_u8_range(const uint8_t* src, std::size_t planes, std::size_t a, std::size_t b,
                           uint8_t* dst) {
    static const UnitFn unit = best_unit();
    unshuffle_range(unit, src, planes, a, b, dst);
}

bool bitunshuffle_u8_range_with(const char* impl, const uint8_t* src, std::size_t planes,
                                std::size_t a, std::size_t b, uint8_t* dst) {
    const std::string name = impl;
    UnitFn unit = nullptr;
    if (name == "portable") unit = unit_portable;
#if defined(__SSE2__)
    if (name == "sse2") unit = unit_sse2;
#endif
#if defined(ZARRCROP_HAVE_GFNI)
    if (name == "gfni" && cpu_has_gfni()) unit = unit_gfni;
#endif
    if (unit == nullptr) return false;
    unshuffle_range(unit, src, planes, a, b, dst);
    return true;
}

namespace {

// Interleaves `typesize` planes of n bytes each (src + j * n) into n items.
template <std::size_t T>
void interleave_fixed(const uint8_t* src, uint8_t* dst, std::size_t n) {
    std::size_t i = 0;
#if defined(__SSE2__)
    if constexpr (T == 2 || T == 4 || T == 8) {
        for (; i + 16 <= n; i += 16) {
            __m128i p[T];
            for (std::size_t j = 0; j < T; ++j)
                p[j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j * n + i));
            if constexpr (T == 2) {
                _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                                 _mm_unpacklo_epi8(p[0], p[1]));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i + 16),
                                 _mm_unpackhi_epi8(p[0], p[1]));
            } else if constexpr (T == 4) {
                const __m128i ab_lo = _mm_unpacklo_epi8(p[0], p[1]);
                const __m128i ab_hi = _mm_unpackhi_epi8(p[0], p[1]);
                const __m128i cd_lo = _mm_unpacklo_epi8(p[2], p[3]);
                const __m128i cd_hi = _mm_unpackhi_epi8(p[2], p[3]);
                auto* out = reinterpret_cast<__m128i*>(dst + 4 * i);
                _mm_storeu_si128(out + 0, _mm_unpacklo_epi16(ab_lo, cd_lo));
                _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(ab_lo, cd_lo));
                _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(ab_hi, cd_hi));
                _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(ab_hi, cd_hi));
            } else {
                __m128i b[8];  // pairs of bytes, then quads, then the 8-byte items
                for (int h = 0; h < 2; ++h) {
                    const __m128i x01 =
                        h ? _mm_unpackhi_epi8(p[0], p[1]) : _mm_unpacklo_epi8(p[0], p[1]);
                    const __m128i x23 =
                        h ? _mm_unpackhi_epi8(p[2], p[3]) : _mm_unpacklo_epi8(p[2], p[3]);
                    const __m128i x45 =
                        h ? _mm_unpackhi_epi8(p[4], p[5]) : _mm_unpacklo_epi8(p[4], p[5]);
                    const __m128i x67 =
                        h ? _mm_unpackhi_epi8(p[6], p[7]) : _mm_unpacklo_epi8(p[6], p[7]);
                    const __m128i q0 = _mm_unpacklo_epi16(x01, x23);
                    const __m128i q1 = _mm_unpackhi_epi16(x01, x23);
                    const __m128i q2 = _mm_unpacklo_epi16(x45, x67);
                    const __m128i q3 = _mm_unpackhi_epi16(x45, x67);
                    b[4 * h + 0] = _mm_unpacklo_epi32(q0, q2);
                    b[4 * h + 1] = _mm_unpackhi_epi32(q0, q2);
                    b[4 * h + 2] = _mm_unpacklo_epi32(q1, q3);
                    b[4 * h + 3] = _mm_unpackhi_epi32(q1, q3);
                }
                auto* out = reinterpret_cast<__m128i*>(dst + 8 * i);
                for (int k = 0; k < 8; ++k) _mm_storeu_si128(out + k, b[k]);
            }
        }
    }
#endif
    for (; i < n; ++i)
        for (std::size_t j = 0; j < T; ++j) dst[i * T + j] = src[j * n + i];
}

void interleave(const uint8_t* src, uint8_t* dst, std::size_t n, std::size_t typesize) {
    switch (typesize) {
        case 1:
            std::memcpy(dst, src, n);
            return;
        case 2:
            interleave_fixed<2>(src, dst, n);
            return;
        case 4:
            interleave_fixed<4>(src, dst, n);
            return;
        case 8:
            interleave_fixed<8>(src, dst, n);
            return;
        default:
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t j = 0; j < typesize; ++j) dst[i * typesize + j] = src[j * n + i];
    }
}

}  // namespace

void byte_unshuffle(const uint8_t* src, uint8_t* dst, std::size_t bytes, std::size_t typesize) {
    const std::size_t n = typesize > 0 ? bytes / typesize : 0;
    if (typesize > 1) interleave(src, dst, n, typesize);
    const std::size_t done = typesize > 1 ? n * typesize : 0;
    std::memcpy(dst + done, src + done, bytes - done);
}

void blosc1_bitunshuffle(const uint8_t* src, uint8_t* dst, std::size_t bytes, std::size_t typesize,
                         uint8_t* tmp) {
    if (!blosc1_block_bitshuffled(bytes, typesize)) {
        std::memcpy(dst, src, bytes);  // Blosc1 left such a block unshuffled
        return;
    }
    const std::size_t n = bytes / typesize;
    if (typesize == 1) {
        bitunshuffle_u8(src, dst, n);
    } else {
        // Each byte position's 8 bit planes are the typesize-1 layout of that byte of every
        // item: unshuffle them into byte planes, then interleave the planes into items.
        for (std::size_t j = 0; j < typesize; ++j) bitunshuffle_u8(src + j * n, tmp + j * n, n);
        interleave(tmp, dst, n, typesize);
    }
    const std::size_t done = n * typesize;
    std::memcpy(dst + done, src + done, bytes - done);
}

void blosc1_bitunshuffle_items(const uint8_t* src, std::size_t n, std::size_t typesize,
                               std::size_t i0, std::size_t i1, uint8_t* dst, uint8_t* tmp) {
    if (i1 <= i0) return;
    if (typesize == 1) {
        bitunshuffle_u8_range(src, n / 8, i0, i1, dst);
        return;
    }
    const std::size_t m = i1 - i0;
    for (std::size_t j = 0; j < typesize; ++j)
        bitunshuffle_u8_range(src + j * n, n / 8, i0, i1, tmp + j * m);
    interleave(tmp, dst, m, typesize);
}

}  // namespace zarrcrop
