// Validation and decompression of Blosc1-format chunks (what numcodecs.Blosc writes for zarr v2
// and what zarr v3's `blosc` codec writes). Every header field and every block/stream offset is
// checked against the buffer and the expected chunk size before C-Blosc2 sees the bytes, since
// Blosc decoders have a history of malformed-input bugs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct blosc2_context_s;

namespace zarrcrop {

struct BloscHeader {
    // The flags byte (header byte 2): bit meanings of the Blosc1 format.
    static constexpr std::size_t kFlagsByte = 2;
    static constexpr uint8_t kByteShuffle = 0x01;
    static constexpr uint8_t kMemcpyed = 0x02;  // stored raw after the header
    static constexpr uint8_t kBitShuffle = 0x04;
    static constexpr uint8_t kDelta = 0x08;    // C-Blosc2's delta filter (zarr never writes it)
    static constexpr uint8_t kNoSplit = 0x10;  // one stream per block, not one per byte of an item

    uint8_t version = 0;
    uint8_t flags = 0;
    uint8_t typesize = 0;
    // The header's int32 fields, widened: every size and offset derived from them is computed
    // in 64 bits (nbytes + blocksize overflows int32 for chunks near 2 GiB).
    int64_t nbytes = 0;
    int64_t blocksize = 0;
    int64_t cbytes = 0;

    bool memcpyed() const { return (flags & kMemcpyed) != 0; }
    bool byte_shuffle() const { return (flags & kByteShuffle) != 0; }
    bool bit_shuffle() const { return (flags & kBitShuffle) != 0; }
    bool delta() const { return (flags & kDelta) != 0; }
    bool no_split() const { return (flags & kNoSplit) != 0; }
    int codec() const { return flags >> 5; }  // 0 blosclz, 1 lz4, 3 zlib, 4 zstd
    // At least 1 for a validated header (0 < blocksize <= nbytes).
    int64_t nblocks() const { return (nbytes + blocksize - 1) / blocksize; }
};

// Where one block's compressed streams lie in the chunk: [start, end).
struct BlockExtent {
    uint32_t start = 0;
    uint32_t end = 0;
};

// Validation is split so that a chunk can be checked as it is read piecewise. Every function
// throws ChunkError saying what is wrong (callers add the array and chunk key).
//
// Checks the 16-byte header at src against the chunk's total length `size`, the decoded size
// the chunk shape needs. Any typesize but 0 is accepted (it need not be the item size).
BloscHeader validate_blosc_header(const uint8_t* src, std::size_t size,
                                  std::size_t expected_nbytes);
// The chunk's total length as its 16-byte header at src states it (before validation: a
// read that does not know the length yet; validate_blosc_header checks it), 0 if negative.
std::size_t blosc_stated_size(const uint8_t* src);
// Bytes at the chunk's start holding the header and the block offset table.
std::size_t blosc_prefix_bytes(const BloscHeader& h);
// From the offset table (src must hold the prefix): each block's extent, checked to lie after
// the table, inside the chunk and not to overlap another block.
std::vector<BlockExtent> blosc_block_extents(const BloscHeader& h, const uint8_t* src,
                                             std::size_t size);
// Walks the streams of every block not marked in `skip` (null: all blocks); each must lie
// inside its extent with 0 < csize <= the stream's decoded size. Only those blocks' bytes of
// src are read.
void validate_blosc_streams(const BloscHeader& h, const uint8_t* src,
                            const std::vector<BlockExtent>& extents,
                            const std::vector<uint8_t>* skip);
// The same for block b alone, given its `len` bytes (its extent) at `block`.
void validate_blosc_block(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b);
// All of the above for a chunk held whole in memory.
BloscHeader validate_blosc_chunk(const uint8_t* src, std::size_t size, std::size_t expected_nbytes);

class ZstdDecoder;

// True when decode_block_streams can decode this chunk's blocks: zstd- (the tutorial's codec)
// or lz4-compressed streams (numcodecs' default). The caller still undoes the shuffle filter.
bool blosc_streams_decodable(const BloscHeader& h);
// Decompresses the streams of block b (its `len` bytes at `block`) into dst, which receives
// the block's decoded size: the block's bytes before the shuffle filter is undone. Streams
// stored raw are copied. Makes validate_blosc_block's checks as it goes (each size is read
// once, so a block that changes meanwhile, in a mapped file, cannot make it read out of
// bounds) and throws ChunkError when a stream does not decode to its exact size. Only for
// blosc_streams_decodable chunks.
void decode_block_streams(const BloscHeader& h, const uint8_t* block, std::size_t len, int64_t b,
                          uint8_t* dst, ZstdDecoder& zstd);
// The decoded size of block b.
inline int64_t blosc_block_bytes(const BloscHeader& h, int64_t b) {
    return (b == h.nblocks() - 1) ? h.nbytes - b * h.blocksize : h.blocksize;
}

// One decompression context (single-threaded); each worker thread owns one.
class BloscDecoder {
public:
    BloscDecoder();
    ~BloscDecoder();
    BloscDecoder(const BloscDecoder&) = delete;
    BloscDecoder& operator=(const BloscDecoder&) = delete;

    // Decompresses a chunk already accepted by validate_blosc_chunk into dst (dst_size must be
    // the header's nbytes). Throws ChunkError if C-Blosc2 reports anything unexpected.
    void decompress(const uint8_t* src, std::size_t size, uint8_t* dst, std::size_t dst_size);

    // Decompresses only the blocks whose `skip` entry is 0 (one entry per block of the
    // validated header `h`) into their places in dst (dst_size = h.nbytes); the bytes of
    // skipped blocks are left untouched.
    // Thread-safe across decoders: several may decode disjoint blocks of the same src into the
    // same dst at once.
    void decompress_blocks(const BloscHeader& h, const uint8_t* src, std::size_t size, uint8_t* dst,
                           std::size_t dst_size, const std::vector<uint8_t>& skip);

private:
    blosc2_context_s* ctx_;
};

// Clears the bit-shuffle flag in the header of the writable chunk copy at `chunk`: C-Blosc2
// then stops before its own (scalar, for 1-byte items) unshuffle and the caller undoes it.
inline void blosc_clear_bitshuffle(uint8_t* chunk, const BloscHeader& h) {
    chunk[BloscHeader::kFlagsByte] = static_cast<uint8_t>(h.flags & ~BloscHeader::kBitShuffle);
}
// True when the chunk bytes at `chunk` (at least 3) are a memcpyed Blosc chunk.
inline bool blosc_memcpyed(const uint8_t* chunk, std::size_t size) {
    return size > BloscHeader::kFlagsByte &&
           (chunk[BloscHeader::kFlagsByte] & BloscHeader::kMemcpyed) != 0;
}

// Must be called once per process before any decoding (idempotent).
void blosc_library_init();
std::string blosc_library_version();

}  // namespace zarrcrop
