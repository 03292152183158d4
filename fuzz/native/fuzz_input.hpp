// The libFuzzer input format of fuzz_decoder.cpp (make_inputs.py writes seeds in it).
//
// A 16-byte header chooses the array layout and the selections; the rest of the input is the
// content of one chunk file (or, for sharded layouts, of one shard file):
//   h[0] % 6   kind: 0 Blosc, 1 zstd, 2 gzip, 3 none (raw), 4 zstd + crc32c, 5 sharded
//   h[1]       bits 0-1: itemsize 1 << n; bit 4: Fortran-order chunks; bit 5: stored in the
//              other byte order (swap units of itemsize); bit 6: shard index at the start;
//              bit 7: shard index without crc32c
//   h[2] % 3   ndim - 1
//   h[3..5]    chunk (inner chunk) shape: 1 + h[3 + d] % 24
//   h[6]       bit d: dimension d's last chunk (or shard) is partial (the array is shorter)
//   h[7] % 4   inner codec of a shard: 0 Blosc, 1 zstd, 2 none, 3 zstd + crc32c
//   h[8..10]   selection start per dimension (mod the dimension's length)
//   h[11]      2 bits per dimension: selection step 1, 2, 3 or -1
//   h[12..14]  read_crops crop shape per dimension: 1 + h[12 + d] % (2 * chunk)
//   h[15]      bit 0: decoded-chunk cache on; bits 1-7: read_crops start offset (fill outside)
// Unsharded arrays are two chunks long per dimension; the chunk file is written as the first
// and the last chunk (the others are missing: fill value). Sharded arrays are one shard of two
// inner chunks per dimension, written as the only shard file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "array_spec.hpp"
#include "plan/chunk_plan.hpp"

namespace zarrcrop_fuzz {

constexpr std::size_t kHeaderBytes = 16;

struct FuzzCase {
    zarrcrop::ArraySpec spec;
    std::vector<std::string> keys;  // files that get the input's payload
    std::vector<zarrcrop::DimSelection> selection;
    std::vector<int64_t> crop_shape;
    std::vector<int64_t> crop_starts;  // 3 crops
    bool cache = false;
};

inline FuzzCase decode_header(const uint8_t* h, const std::string& root) {
    using zarrcrop::Codec;
    FuzzCase fc;
    zarrcrop::ArraySpec& s = fc.spec;
    s.name = "fuzz";
    s.root = root;
    const int kind = h[0] % 6;
    s.itemsize = std::size_t{1} << (h[1] & 3);
    s.fortran_order = (h[1] & 0x10) != 0;
    if ((h[1] & 0x20) && s.itemsize > 1) s.swap_width = s.itemsize;
    const std::size_t ndim = 1 + h[2] % 3;
    const bool sharded = kind == 5;
    const int inner = h[7] % 4;  // sharded: 0 Blosc, 1 zstd, 2 none, 3 zstd + crc32c
    const int codec = sharded ? (inner == 0 ? 0 : inner == 1 ? 1 : inner == 2 ? 3 : 4) : kind;
    switch (codec) {
        case 0:
            s.codecs = {Codec::Blosc};
            break;
        case 1:
            s.codecs = {Codec::Zstd};
            break;
        case 2:
            s.codecs = {Codec::Gzip};
            break;
        case 3:
            break;
        case 4:
            s.codecs = {Codec::Zstd, Codec::Crc32c};
            break;
    }
    for (std::size_t d = 0; d < ndim; ++d) {
        const int64_t c = 1 + h[3 + d] % 24;
        const int64_t whole = 2 * c;  // two chunks, or one shard of two inner chunks
        s.chunks.push_back(c);
        s.shape.push_back(((h[6] >> d) & 1) ? whole - (c + 1) / 2 : whole);
        if (sharded) s.shard_shape.push_back(whole);
    }
    if (sharded) {
        s.shard_index_at_start = (h[1] & 0x40) != 0;
        s.shard_index_crc32c = (h[1] & 0x80) == 0;
        s.keys.prefix = "c";
        s.keys.separator = '/';
    }
    s.fill_value.assign(s.itemsize, 0x5A);

    std::vector<int64_t> first(ndim, 0), last(ndim, sharded ? 0 : 1);
    fc.keys.push_back(zarrcrop::chunk_key(s.keys, first.data(), ndim));
    if (!sharded) fc.keys.push_back(zarrcrop::chunk_key(s.keys, last.data(), ndim));

    static const int64_t steps[4] = {1, 2, 3, -1};
    for (std::size_t d = 0; d < ndim; ++d) {
        const int64_t n = s.shape[d];
        const int64_t start = h[8 + d] % n;
        const int64_t step = steps[(h[11] >> (2 * d)) & 3];
        // As many indices as fit: start, start + step, ... inside [0, n).
        const int64_t count = step > 0 ? (n - 1 - start) / step + 1 : start / -step + 1;
        fc.selection.push_back(zarrcrop::DimSelection{start, step, count});
        fc.crop_shape.push_back(1 + h[12 + d] % (2 * s.chunks[d]));
    }
    const int64_t offset = (h[15] >> 1) % 8 - 2;  // -2 .. 5: some crops reach outside
    for (int i = 0; i < 3; ++i)
        for (std::size_t d = 0; d < ndim; ++d)
            fc.crop_starts.push_back(i == 0   ? 0
                                     : i == 1 ? fc.selection[d].start
                                              : s.shape[d] - fc.crop_shape[d] + offset);
    fc.cache = (h[15] & 1) != 0;
    return fc;
}

}  // namespace zarrcrop_fuzz
