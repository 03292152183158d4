#include "reader.hpp"

#include <memory>
#include <stdexcept>

#include "blosc_decoder.hpp"
#include "errors.hpp"
#include "stitcher.hpp"
#include "thread_pool.hpp"

namespace zarrcrop {

namespace {

// Per-thread scratch, reused across tasks and reads to keep allocations off the hot path.
struct WorkerScratch {
    std::vector<uint8_t> file;
    std::vector<uint8_t> decoded;
    std::unique_ptr<BloscDecoder> decoder;

    BloscDecoder& blosc() {
        if (!decoder) decoder = std::make_unique<BloscDecoder>();
        return *decoder;
    }
};

WorkerScratch& scratch() {
    thread_local WorkerScratch s;
    return s;
}

std::string describe(const ArraySpec& spec, const std::string& key) {
    return "array '" + spec.name + "', chunk '" + key + "'";
}

}  // namespace

CropReader::CropReader(ArraySpec spec) : spec_(std::move(spec)), source_(spec_.root) {
    spec_.validate();
    if (spec_.ndim() > kMaxDims) throw std::invalid_argument(spec_.name + ": too many dimensions");
    blosc_library_init();
    chunk_strides_.assign(spec_.ndim(), 0);
    int64_t stride = static_cast<int64_t>(spec_.itemsize);
    for (std::size_t d = spec_.ndim(); d-- > 0;) {
        chunk_strides_[d] = stride;
        stride *= spec_.chunks[d];
    }
}

void CropReader::read(const std::vector<DimSelection>& selection, void* out,
                      std::size_t out_nbytes) const {
    ChunkPlan plan(spec_, selection);
    std::size_t expected = spec_.itemsize;
    for (int64_t n : plan.out_shape()) expected *= static_cast<std::size_t>(n);
    if (expected != out_nbytes)
        throw std::invalid_argument("output buffer has " + std::to_string(out_nbytes) +
                                    " bytes, the selection needs " + std::to_string(expected));
    if (plan.num_tasks() == 0 || expected == 0) return;

    std::vector<int64_t> out_strides(spec_.ndim());
    int64_t stride = static_cast<int64_t>(spec_.itemsize);
    for (std::size_t d = spec_.ndim(); d-- > 0;) {
        out_strides[d] = stride;
        stride *= plan.out_shape()[d];
    }
    auto* dst = static_cast<uint8_t*>(out);
    const std::function<void(std::size_t)> task = [&](std::size_t i) {
        read_task(plan, i, dst, out_strides.data());
    };
    process_pool()->parallel_for(plan.num_tasks(), task);
}

void CropReader::read_task(const ChunkPlan& plan, std::size_t task, uint8_t* out,
                           const int64_t* out_strides) const {
    const std::size_t ndim = spec_.ndim();
    const DimPiece* pieces[kMaxDims];
    plan.task_pieces(task, pieces);

    int64_t coords[kMaxDims];
    StridedCopy region;
    region.ndim = ndim;
    region.itemsize = spec_.itemsize;
    int64_t src_offset = 0;
    int64_t dst_offset = 0;
    for (std::size_t d = 0; d < ndim; ++d) {
        const DimPiece& p = *pieces[d];
        coords[d] = p.chunk;
        region.counts[d] = p.count;
        region.src_strides[d] = plan.selection()[d].step * chunk_strides_[d];
        region.dst_strides[d] = out_strides[d];
        src_offset += p.local_start * chunk_strides_[d];
        dst_offset += p.out_start * out_strides[d];
    }
    const int64_t elements = region.simplify();
    if (elements == 0) return;
    uint8_t* dst = out + dst_offset;

    const std::string key = chunk_key(spec_.keys, coords, ndim);
    const std::size_t chunk_bytes = spec_.chunk_nbytes();
    WorkerScratch& s = scratch();
    try {
        const std::size_t max_file =
            chunk_bytes + (spec_.compressor == Compressor::Blosc ? 16 : 0);
        if (!source_.read(key, s.file, max_file)) {
            fill_strided(dst, region, spec_.fill_value.data());
            return;
        }
        if (spec_.compressor == Compressor::None) {
            if (s.file.size() != chunk_bytes)
                throw ChunkError("uncompressed chunk has " + std::to_string(s.file.size()) +
                                 " bytes, the chunk shape needs " + std::to_string(chunk_bytes));
            copy_strided(s.file.data() + src_offset, dst, region);
            return;
        }
        validate_blosc_chunk(s.file.data(), s.file.size(), chunk_bytes, spec_.itemsize);
        const bool whole_chunk = src_offset == 0 &&
                                 static_cast<std::size_t>(elements) * spec_.itemsize == chunk_bytes &&
                                 region.is_contiguous();
        if (whole_chunk) {
            // The output holds this chunk as one contiguous run: decode straight into it.
            s.blosc().decompress(s.file.data(), s.file.size(), dst, chunk_bytes);
            return;
        }
        s.decoded.resize(chunk_bytes);
        s.blosc().decompress(s.file.data(), s.file.size(), s.decoded.data(), chunk_bytes);
        copy_strided(s.decoded.data() + src_offset, dst, region);
    } catch (const ChunkError& e) {
        throw ChunkError(describe(spec_, key) + ": " + e.what());
    } catch (const ChunkIoError& e) {
        throw ChunkIoError(describe(spec_, key) + ": " + e.what(), e.error_number());
    }
}

}  // namespace zarrcrop
