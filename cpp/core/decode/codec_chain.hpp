// The codec chain of chunks that are not plain Blosc (zarr v3 zstd / gzip / crc32c, a Blosc
// step inside a chain) and the byte swap of arrays stored in the other byte order: a chunk
// file's bytes in, the raw chunk bytes out.
#pragma once

#include <cstddef>
#include <cstdint>

#include "array_spec.hpp"
#include "decode/block_decode.hpp"

namespace zarrcrop {

// Decodes `file` through spec.codecs (last codec first) and swaps the byte order; returns the
// raw chunk bytes (chunk_bytes of them), which live in `file` or the worker's scratch. Only
// the first `want` bytes are guaranteed: a final zstd step stops decoding there. Decoded
// sizes are bounded by max_bytes. Throws ChunkError for corrupt data.
uint8_t* decode_chain(const ArraySpec& spec, std::size_t chunk_bytes, MutableBytes file,
                      std::size_t want, std::size_t max_bytes);

// Reverses the byte order of every `width`-byte unit (items, or the parts of complex items).
void swap_byte_order(uint8_t* data, std::size_t size, std::size_t width);

}  // namespace zarrcrop
