// What the core needs to know about one array: geometry, item size, codec and where chunks live.
// Built by the Python layer from zarr-python's parsed metadata; the core never parses JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace zarrcrop {

// Bytes-to-bytes codecs zarrcrop decodes natively (zarr v2 compressors, zarr v3 codecs).
enum class Codec { Blosc, Zstd, Gzip, Crc32c };

// How a chunk's file turns into raw chunk bytes: None (stored raw), Blosc (one Blosc codec: the
// fast path with partial decoding), Chain (anything else: decoded whole, codec by codec).
enum class Compressor { None, Blosc, Chain };

// How chunk grid coordinates become a file name below the array directory.
// zarr v2 and v3 "v2" encoding: "1.2.3" (0-d: "0"); v3 "default": "c/1/2/3" (0-d: "c").
struct ChunkKeyEncoding {
    std::string prefix;  // "" or "c"
    char separator = '.';
};

struct ArraySpec {
    std::string name;  // shown in error messages (usually the array's directory)
    std::string root;  // directory the chunk keys are relative to
    std::vector<int64_t> shape;
    std::vector<int64_t> chunks;
    std::size_t itemsize = 1;
    std::vector<Codec> codecs;   // in encoding order; decoded last to first
    std::size_t swap_width = 0;  // > 0: stored in the other byte order, swap units this wide
    bool fortran_order = false;  // chunks laid out in Fortran (column-major) order
    // Sharding (zarr v3 sharding_indexed): `chunks` is then the inner chunk shape and files hold
    // shards of `shard_shape` (a multiple of `chunks`); empty when unsharded.
    std::vector<int64_t> shard_shape;
    bool shard_index_at_start = false;
    bool shard_index_crc32c = true;
    Compressor compressor = Compressor::None;  // derived from the above by validate()
    ChunkKeyEncoding keys;
    std::vector<uint8_t> fill_value;  // exactly itemsize bytes

    std::size_t ndim() const { return shape.size(); }
    bool sharded() const { return !shard_shape.empty(); }
    // Bytes of one decoded chunk (edge chunks are stored full size).
    std::size_t chunk_nbytes() const;
    // Throws std::invalid_argument when the spec is inconsistent; sets `compressor`.
    void validate();
};

std::string chunk_key(const ChunkKeyEncoding& enc, const int64_t* coords, std::size_t ndim);

}  // namespace zarrcrop
