// Per-thread scratch of the decoding stages: buffers and decompression contexts, reused across
// chunks and reads so that a warm read allocates nothing. Buffers grown past
// kKeepScratchBytes (huge chunks) are given back when the thread goes idle or a read ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "codec/blosc_decoder.hpp"
#include "runtime/byte_buffer.hpp"
#include "codec/codecs.hpp"

namespace zarrcrop {

// Scratch a thread keeps between reads: enough for the chunks of a typical dataset (a
// (3, 960, 960) uint8 chunk is 2.7 MB, float32 flow of (2, 960, 960) 7.4 MB).
constexpr std::size_t kKeepScratchBytes = std::size_t{8} << 20;

struct WorkerScratch {
    ByteBuffer file;                  // a chunk file, or the header and block offsets of one
    ByteBuffer decoded;               // a decoded chunk
    ByteBuffer shuffled;              // blocks still bit-shuffled (see bitshuffle.hpp)
    ByteBuffer block;                 // one decoded block (block-by-block decoding)
    ByteBuffer compressed;            // one block's compressed bytes (decode_block)
    ByteBuffer block_raw;             // one block's decoded streams, still shuffled
    ByteBuffer block_tmp;             // bit-unshuffle scratch for items of several bytes
    ByteBuffer chain[2];              // ping-pong buffers of a codec chain
    std::vector<uint8_t> skip;        // per Blosc block: 1 = not needed
    std::vector<uint8_t> block_mask;  // one-block masks for split decoding
    std::unique_ptr<BloscDecoder> decoder;
    std::unique_ptr<ZstdDecoder> zstd_decoder;

    BloscDecoder& blosc() {
        if (!decoder) decoder = std::make_unique<BloscDecoder>();
        return *decoder;
    }
    ZstdDecoder& zstd() {
        if (!zstd_decoder) zstd_decoder = std::make_unique<ZstdDecoder>();
        return *zstd_decoder;
    }
    // Gives back every buffer larger than kKeepScratchBytes.
    void trim();
};

// The calling thread's scratch.
WorkerScratch& scratch();
// scratch().trim(): called by pool workers before they sleep and by readers after a read.
void release_thread_scratch();

}  // namespace zarrcrop
