#include "reader.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include "blosc_decoder.hpp"
#include "stitcher.hpp"
#include "thread_pool.hpp"

namespace zarrcrop {

namespace {

std::vector<int64_t> c_strides(const std::vector<int64_t>& shape, std::size_t itemsize) {
    std::vector<int64_t> strides(shape.size());
    auto stride = static_cast<int64_t>(itemsize);
    for (std::size_t d = shape.size(); d-- > 0;) {
        strides[d] = stride;
        stride *= shape[d];
    }
    return strides;
}

std::string format_coords(const int64_t* v, std::size_t n) {
    std::string s = "(";
    for (std::size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + (n == 1 ? ",)" : ")");
}

// Builds the stitch for one chunk: pieces[d] says which part of the chunk goes where.
Stitch make_stitch(const DimPiece* const* pieces, const int64_t* steps, std::size_t ndim,
                   std::size_t itemsize, const int64_t* chunk_strides, uint8_t* out,
                   const int64_t* out_strides) {
    Stitch st;
    st.region.ndim = ndim;
    st.region.itemsize = itemsize;
    int64_t dst_offset = 0;
    for (std::size_t d = 0; d < ndim; ++d) {
        const DimPiece& p = *pieces[d];
        st.region.counts[d] = p.count;
        st.region.src_strides[d] = steps[d] * chunk_strides[d];
        st.region.dst_strides[d] = out_strides[d];
        st.src_offset += p.local_start * chunk_strides[d];
        dst_offset += p.out_start * out_strides[d];
    }
    st.dst = out + dst_offset;
    return st;
}

// Chunks of one read taken at a time (see CropReader::read).
constexpr std::size_t kRunChunks = 256;

ArraySpec validated(ArraySpec spec) {
    spec.validate();
    return spec;
}

}  // namespace

CropReader::CropReader(ArraySpec spec, std::size_t cache_bytes)
    : spec_(validated(std::move(spec))),
      source_(spec_.root),
      shards_(spec_.sharded() ? std::make_unique<ShardReader>(spec_, source_) : nullptr),
      cache_(std::make_unique<ChunkCache>(cache_bytes)),
      decoder_(spec_, source_, shards_.get(), cache_.get()) {
    if (spec_.ndim() > kMaxDims) throw std::invalid_argument(spec_.name + ": too many dimensions");
    blosc_library_init();
    chunk_strides_ = c_strides(spec_.chunks, spec_.itemsize);
    if (spec_.fortran_order) {
        // Column-major chunks: the first dimension varies fastest.
        auto stride = static_cast<int64_t>(spec_.itemsize);
        for (std::size_t d = 0; d < spec_.ndim(); ++d) {
            chunk_strides_[d] = stride;
            stride *= spec_.chunks[d];
        }
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

    const std::size_t ndim = spec_.ndim();
    const std::vector<int64_t> out_strides = c_strides(plan.out_shape(), spec_.itemsize);
    std::vector<int64_t> steps(ndim);
    for (std::size_t d = 0; d < ndim; ++d) steps[d] = selection[d].step;
    auto* dst = static_cast<uint8_t*>(out);
    const bool stream = expected > stream_threshold();  // the output cannot stay in cache

    // Chunks are taken kRunChunks at a time, which bounds the memory for their stitches and
    // the files held open however large the selection.
    const std::size_t window = std::min(plan.num_tasks(), kRunChunks);
    std::vector<int64_t> coords(window * ndim);
    std::vector<Stitch> stitches(window);
    std::vector<ChunkTask> tasks;
    tasks.reserve(window);
    for (std::size_t first = 0; first < plan.num_tasks(); first += window) {
        tasks.clear();
        const std::size_t last = std::min(plan.num_tasks(), first + window);
        for (std::size_t i = first; i < last; ++i) {
            const DimPiece* pieces[kMaxDims];
            plan.task_pieces(i, pieces);
            int64_t* c = coords.data() + (i - first) * ndim;
            for (std::size_t d = 0; d < ndim; ++d) c[d] = pieces[d]->chunk;
            Stitch& st = stitches[i - first];
            st = make_stitch(pieces, steps.data(), ndim, spec_.itemsize, chunk_strides_.data(),
                             dst, out_strides.data());
            st.region.stream = stream;
            if (st.region.simplify() == 0) continue;
            tasks.push_back(ChunkTask{c, &st, 1});
        }
        run_window(tasks.data(), tasks.size());
    }
}

void CropReader::run(const std::vector<ChunkTask>& all) const {
    for (std::size_t first = 0; first < all.size(); first += kRunChunks) {
        const std::size_t last = std::min(all.size(), first + kRunChunks);
        run_window(all.data() + first, last - first);
    }
}

void CropReader::run_window(const ChunkTask* tasks, std::size_t count) const {
    if (count == 0) return;
    const std::shared_ptr<ThreadPool> pool = process_pool();
    // Fewer chunks than threads: chunks that are not decoded block by block spread their
    // blocks over the pool themselves, one chunk at a time.
    const bool few = count < pool->size();
    std::vector<BlockJob> jobs(count);
    std::vector<uint8_t> planned(count, 0);
    const std::function<void(std::size_t)> open_task = [&](std::size_t i) {
        planned[i] = decoder_.process_or_plan(tasks[i].coords, tasks[i].stitches, tasks[i].n,
                                              jobs[i], few ? pool.get() : nullptr);
    };
    if (few) {
        for (std::size_t i = 0; i < count; ++i) open_task(i);
    } else {
        pool->parallel_for(count, open_task);
    }
    // (job, block index) for every block to decode, the largest compressed block first: its
    // size predicts its decoding time, and longest-first keeps the last tasks short.
    std::vector<std::pair<uint32_t, uint32_t>> blocks;
    for (std::size_t i = 0; i < jobs.size(); ++i)
        if (planned[i])
            for (std::size_t k = 0; k < jobs[i].blocks.size(); ++k)
                blocks.emplace_back(static_cast<uint32_t>(i), static_cast<uint32_t>(k));
    if (blocks.empty()) return;
    const auto compressed = [&](const std::pair<uint32_t, uint32_t>& w) {
        const BlockJob& j = jobs[w.first];
        const BlockExtent& e = j.extents[static_cast<std::size_t>(j.blocks[w.second])];
        return e.end - e.start;
    };
    std::stable_sort(blocks.begin(), blocks.end(),
                     [&](const auto& x, const auto& y) { return compressed(x) > compressed(y); });
    // Blocks still to decode per chunk: the task that decodes a chunk's last block finishes
    // the chunk (checks its mapping, closes its file) rather than this thread afterwards.
    std::vector<std::atomic<std::size_t>> left(count);
    for (std::size_t i = 0; i < count; ++i)
        left[i].store(planned[i] ? jobs[i].blocks.size() : 0, std::memory_order_relaxed);
    const std::function<void(std::size_t)> block_task = [&](std::size_t i) {
        BlockJob& job = jobs[blocks[i].first];
        decoder_.decode_block(job, blocks[i].second);
        if (left[blocks[i].first].fetch_sub(1, std::memory_order_acq_rel) == 1)
            decoder_.finish_job(job);
    };
    pool->parallel_for(blocks.size(), block_task);
}

CropReader::ChunkWork CropReader::plan_crops(const int64_t* starts, std::size_t n,
                                             const std::vector<int64_t>& crop_shape, void* out,
                                             std::size_t out_nbytes, bool fill_outside,
                                             const uint8_t* fill) const {
    const std::size_t ndim = spec_.ndim();
    if (crop_shape.size() != ndim)
        throw std::invalid_argument("crop shape has " + std::to_string(crop_shape.size()) +
                                    " dimensions, array has " + std::to_string(ndim));
    std::size_t crop_bytes = spec_.itemsize;
    for (int64_t c : crop_shape) {
        if (c < 0) throw std::invalid_argument("crop shape must not be negative");
        if (__builtin_mul_overflow(crop_bytes, static_cast<std::size_t>(c), &crop_bytes))
            crop_bytes = SIZE_MAX;  // never equals a real buffer's size (unless zero-sized)
    }
    std::size_t all_bytes = 0;
    const bool too_many = __builtin_mul_overflow(crop_bytes, n, &all_bytes) ||
                          crop_bytes == SIZE_MAX;
    if (too_many || all_bytes != out_nbytes)
        throw std::invalid_argument(
            "output buffer has " + std::to_string(out_nbytes) + " bytes, the crops need " +
            (too_many ? std::string("more than 2**64") : std::to_string(all_bytes)));
    ChunkWork by_chunk;
    if (n == 0) return by_chunk;

    const std::vector<int64_t> out_strides = c_strides(crop_shape, spec_.itemsize);
    const std::vector<int64_t> unit_steps(ndim, 1);
    const bool stream = out_nbytes > stream_threshold();  // the output cannot stay in cache
    auto* base = static_cast<uint8_t*>(out);

    // Group every (crop, chunk) piece by chunk so each chunk is decoded once.
    std::vector<std::vector<DimPiece>> pieces(ndim);
    for (std::size_t i = 0; i < n; ++i) {
        const int64_t* start = starts + i * ndim;
        uint8_t* crop_out = base + i * crop_bytes;
        bool clipped = false;
        bool empty = false;
        for (std::size_t d = 0; d < ndim; ++d) {
            // start + size may overflow for hostile starts: such a crop ends past the array.
            int64_t end = 0;
            const bool overflow = __builtin_add_overflow(start[d], crop_shape[d], &end);
            const int64_t lo = std::max<int64_t>(start[d], 0);
            const int64_t hi = overflow ? spec_.shape[d] : std::min<int64_t>(end, spec_.shape[d]);
            clipped = clipped || overflow || lo != start[d] || hi != end;
            if (crop_bytes == 0) continue;  // bounds only: an extent may be huge
            if (hi <= lo) {
                empty = true;
                pieces[d].clear();
                continue;
            }
            pieces[d] = plan_dimension(DimSelection{lo, 1, hi - lo}, spec_.shape[d],
                                       spec_.chunks[d], d);
            for (DimPiece& p : pieces[d]) p.out_start += lo - start[d];
        }
        if (clipped && !fill_outside)
            throw std::out_of_range("crop " + std::to_string(i) + " starting at " +
                                    format_coords(start, ndim) + " with shape " +
                                    format_coords(crop_shape.data(), ndim) +
                                    " reaches outside the array of shape " +
                                    format_coords(spec_.shape.data(), ndim));
        // An empty crop is still bounds-checked (a start outside the array is an error with
        // boundary "error", as in the Python fallback), but has nothing to read or fill.
        if (crop_bytes == 0) continue;
        if (clipped) {
            StridedCopy whole;
            whole.ndim = 1;
            whole.itemsize = spec_.itemsize;
            whole.counts[0] = static_cast<int64_t>(crop_bytes / spec_.itemsize);
            whole.src_strides[0] = whole.dst_strides[0] = static_cast<int64_t>(spec_.itemsize);
            fill_strided(crop_out, whole, fill);
        }
        if (empty) continue;
        // Cartesian product of the per-dimension pieces.
        std::vector<std::size_t> idx(ndim, 0);
        const DimPiece* which[kMaxDims];
        for (;;) {
            std::vector<int64_t> coords(ndim);
            for (std::size_t d = 0; d < ndim; ++d) {
                which[d] = &pieces[d][idx[d]];
                coords[d] = which[d]->chunk;
            }
            Stitch st = make_stitch(which, unit_steps.data(), ndim, spec_.itemsize,
                                    chunk_strides_.data(), crop_out, out_strides.data());
            st.region.stream = stream;
            if (st.region.simplify() > 0) by_chunk[std::move(coords)].push_back(st);
            bool done = true;
            for (std::size_t d = ndim; d-- > 0;) {
                if (++idx[d] < pieces[d].size()) {
                    done = false;
                    break;
                }
                idx[d] = 0;
            }
            if (done) break;
        }
    }
    return by_chunk;
}

void CropReader::read_crops(const int64_t* starts, std::size_t n,
                            const std::vector<int64_t>& crop_shape, void* out,
                            std::size_t out_nbytes, bool fill_outside, const uint8_t* fill) const {
    const ChunkWork by_chunk =
        plan_crops(starts, n, crop_shape, out, out_nbytes, fill_outside, fill);
    std::vector<ChunkTask> tasks;
    tasks.reserve(by_chunk.size());
    for (const auto& [coords, stitches] : by_chunk)
        tasks.push_back(ChunkTask{coords.data(), stitches.data(), stitches.size()});
    run(tasks);
}

double CropReader::decode_seconds(const int64_t* starts, std::size_t n,
                                  const std::vector<int64_t>& crop_shape, bool shared,
                                  bool fill_outside) const {
    std::size_t crop_bytes = spec_.itemsize;
    for (int64_t c : crop_shape) crop_bytes *= static_cast<std::size_t>(std::max<int64_t>(c, 0));
    const std::vector<uint8_t> fill(spec_.itemsize, 0);
    double total = 0.0;
    const std::size_t group = shared ? n : 1;
    std::vector<uint8_t> sink(crop_bytes * group);
    for (std::size_t first = 0; first < n; first += group) {
        const std::size_t m = std::min(group, n - first);
        const ChunkWork work = plan_crops(starts + first * spec_.ndim(), m, crop_shape,
                                          sink.data(), crop_bytes * m, fill_outside, fill.data());
        for (const auto& [coords, stitches] : work)
            total += decoder_.time_decode(coords.data(), stitches.data(), stitches.size());
    }
    return total;
}

}  // namespace zarrcrop
