#include "array_spec.hpp"

#include <limits>
#include <stdexcept>

namespace zarrcrop {

std::size_t ArraySpec::chunk_nbytes() const {
    std::size_t n = itemsize;
    for (int64_t c : chunks) n *= static_cast<std::size_t>(c);
    return n;
}

void ArraySpec::validate() {
    if (shape.size() != chunks.size())
        throw std::invalid_argument(name + ": shape and chunks have different lengths");
    if (itemsize == 0 || itemsize > 64)
        throw std::invalid_argument(name + ": unsupported item size");
    if (fill_value.size() != itemsize)
        throw std::invalid_argument(name + ": fill value must have exactly itemsize bytes");
    // Chunk bytes must fit the int32 fields of a Blosc header and a size_t product.
    const std::size_t limit = static_cast<std::size_t>(std::numeric_limits<int32_t>::max());
    std::size_t n = itemsize;
    for (std::size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] < 0) throw std::invalid_argument(name + ": negative shape");
        if (chunks[d] <= 0) throw std::invalid_argument(name + ": chunk shape must be positive");
        if (static_cast<std::size_t>(chunks[d]) > limit / n)
            throw std::invalid_argument(name + ": chunk is larger than 2 GiB");
        n *= static_cast<std::size_t>(chunks[d]);
    }
    if (keys.separator != '.' && keys.separator != '/')
        throw std::invalid_argument(name + ": chunk key separator must be '.' or '/'");
    if (sharded()) {
        if (shard_shape.size() != shape.size())
            throw std::invalid_argument(name + ": shard shape has the wrong number of dimensions");
        // The shard index (16 bytes per inner chunk) is read whole: bound it like a chunk.
        std::size_t index_bytes = 16;
        for (std::size_t d = 0; d < shape.size(); ++d) {
            if (shard_shape[d] <= 0 || shard_shape[d] % chunks[d] != 0)
                throw std::invalid_argument(name + ": inner chunks must divide the shard shape");
            const auto per_shard = static_cast<std::size_t>(shard_shape[d] / chunks[d]);
            if (per_shard > limit / index_bytes)
                throw std::invalid_argument(name + ": shard index is larger than 2 GiB");
            index_bytes *= per_shard;
        }
    }
    if (swap_width != 0 && (swap_width > 8 || itemsize % swap_width != 0))
        throw std::invalid_argument(name + ": invalid byte swap width");
    for (std::size_t i = 1; i < codecs.size(); ++i)
        if (codecs[i] == Codec::Blosc)
            throw std::invalid_argument(name + ": blosc must be the first bytes codec");
    if (codecs.empty() && swap_width <= 1)
        compressor = Compressor::None;
    else if (codecs.size() == 1 && codecs[0] == Codec::Blosc && swap_width <= 1)
        compressor = Compressor::Blosc;
    else
        compressor = Compressor::Chain;
}

std::string chunk_key(const ChunkKeyEncoding& enc, const int64_t* coords, std::size_t ndim) {
    std::string key = enc.prefix;
    if (ndim == 0) return key.empty() ? std::string("0") : key;
    for (std::size_t d = 0; d < ndim; ++d) {
        if (!key.empty()) key += enc.separator;
        key += std::to_string(coords[d]);
    }
    return key;
}

}  // namespace zarrcrop
