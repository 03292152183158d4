#include "reader.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "codec/blosc_decoder.hpp"
#include "errors.hpp"
#include "io/fetch_ahead.hpp"
#include "io/merge_runs.hpp"
#include "io/prefetched_bytes.hpp"
#include "io/read_queue.hpp"
#include "stitch/stitcher.hpp"
#include "runtime/thread_pool.hpp"
#include "runtime/worker_scratch.hpp"

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

ArraySpec validated(ArraySpec spec) {
    spec.validate();
    return spec;
}

// Gives back the calling thread's oversized scratch when a read ends, however it ends.
struct ScratchRelease {
    ScratchRelease() = default;
    ScratchRelease(const ScratchRelease&) = delete;
    ScratchRelease& operator=(const ScratchRelease&) = delete;
    ~ScratchRelease() { release_thread_scratch(); }
};

bool out_of_descriptors(int err) {
    return err == EMFILE || err == ENFILE;
}

// Windows of chunks that could not open a file in a row before a read gives up with EMFILE.
constexpr int kMaxOpenStalls = 12;

}  // namespace

std::size_t open_file_window() {
    // getrlimit at most every 100 ms (a syscall per read otherwise); a window too large for
    // a limit lowered meanwhile is handled by run's EMFILE retries.
    static std::atomic<int64_t> next_check{0};
    static std::atomic<std::size_t> window{256};
    const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now < next_check.load(std::memory_order_relaxed)) return window.load();
    rlimit lim{};
    std::size_t soft = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0)
        soft = lim.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<std::size_t>(lim.rlim_cur);
    window.store(std::clamp<std::size_t>(soft / 8, 16, 256));
    next_check.store(now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::milliseconds(100))
                               .count(),
                     std::memory_order_relaxed);
    return window.load();
}

CropReader::CropReader(ArraySpec spec, std::size_t cache_bytes, FetchFn fetch)
    : spec_(validated(std::move(spec))),
      source_(spec_.root),
      store_(fetch ? std::make_shared<ObjectSource>(spec_.root, std::move(fetch)) : nullptr),
      shards_(spec_.sharded() ? std::make_unique<ShardReader>(spec_, source_, store_) : nullptr),
      cache_(std::make_unique<ChunkCache>(cache_bytes)),
      decoder_(spec_, source_, shards_.get(), cache_.get(), store_) {
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

void CropReader::read(const std::vector<DimSelection>& selection, void* out, std::size_t out_nbytes,
                      const CancelFlags& cancel) const {
    const ScratchRelease release;
    ChunkPlan plan(spec_, selection);
    std::size_t expected = spec_.itemsize;
    bool huge = false;
    for (int64_t n : plan.out_shape())
        huge = huge || __builtin_mul_overflow(expected, static_cast<std::size_t>(n), &expected);
    if (huge || expected != out_nbytes)
        throw std::invalid_argument(
            "output buffer has " + std::to_string(out_nbytes) + " bytes, the selection needs " +
            (huge ? std::string("more than 2**64") : std::to_string(expected)));
    if (plan.num_tasks() == 0 || expected == 0) return;

    const std::size_t ndim = spec_.ndim();
    const std::vector<int64_t> out_strides = c_strides(plan.out_shape(), spec_.itemsize);
    std::vector<int64_t> steps(ndim);
    for (std::size_t d = 0; d < ndim; ++d) steps[d] = selection[d].step;
    auto* dst = static_cast<uint8_t*>(out);
    const bool stream = expected > stream_threshold();  // the output cannot stay in cache

    // The tasks of a window of the plan at a time: memory for their stitches stays bounded
    // however large the selection.
    const std::size_t window = std::min(plan.num_tasks(), kWindowPieces);
    WorkWindow w;
    DimPiece pieces[kMaxDims];
    for (std::size_t first = 0; first < plan.num_tasks(); first += window) {
        cancel.check();
        w.tasks.clear();
        w.coords.clear();
        w.stitches.clear();
        w.arena.clear();
        const std::size_t last = std::min(plan.num_tasks(), first + window);
        w.coords.reserve((last - first) * ndim);
        w.stitches.reserve(last - first);
        for (std::size_t i = first; i < last; ++i) {
            plan.task_pieces(i, pieces);
            Stitch st =
                make_stitch(pieces, steps.data(), ndim, spec_.itemsize, chunk_strides_.data(), dst,
                            out_strides.data(), stream, w.arena);
            if (st.dst == nullptr) continue;
            for (std::size_t d = 0; d < ndim; ++d) w.coords.push_back(pieces[d].chunk);
            w.stitches.push_back(st);
        }
        for (std::size_t t = 0; t < w.stitches.size(); ++t)
            w.tasks.push_back(ChunkTask{w.coords.data() + t * ndim, &w.stitches[t], 1});
        run(w.tasks.data(), w.tasks.size(), cancel);
    }
}

void CropReader::run(const ChunkTask* tasks, std::size_t count, const CancelFlags& cancel) const {
    std::size_t window = open_file_window();
    std::vector<ChunkTask> retry;
    for (std::size_t first = 0; first < count; first += window) {
        cancel.check();
        run_window(tasks + first, std::min(window, count - first), cancel, &retry);
    }
    // Chunks whose file could not be opened (this process is out of file descriptors, often
    // because other threads read too): again, in smaller windows, backing off while no window
    // makes progress.
    int stalls = 0;
    std::vector<ChunkTask> again;
    while (!retry.empty()) {
        window = std::max<std::size_t>(1, window / 2);
        again.clear();
        for (std::size_t first = 0; first < retry.size(); first += window) {
            cancel.check();
            run_window(retry.data() + first, std::min(window, retry.size() - first), cancel,
                       &again);
        }
        if (again.size() < retry.size()) {
            stalls = 0;
        } else if (++stalls > kMaxOpenStalls) {
            // Out of descriptors for a while: a last try that raises the open's error (EMFILE).
            run_window(again.data(), again.size(), cancel, nullptr);
            return;
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(1 << std::min(stalls, 7)));
        }
        retry.swap(again);
    }
}

namespace {

// The remote reads submitted while it lives are held, then merged and queued by flush();
// dropped if an error ends the round first.
class HeldReads {
public:
    explicit HeldReads(ReadBatch& batch) : batch_(batch) {
        batch_.hold(kRemoteMergeGap, kRemoteReadPiece);
    }
    HeldReads(const HeldReads&) = delete;
    HeldReads& operator=(const HeldReads&) = delete;
    ~HeldReads() {
        if (!flushed_) batch_.drop_held();
    }
    void flush() {
        flushed_ = true;
        batch_.flush();
    }

private:
    ReadBatch& batch_;
    bool flushed_ = false;
};

}  // namespace

void CropReader::run_window(const ChunkTask* tasks, std::size_t count, const CancelFlags& cancel,
                            std::vector<ChunkTask>* retry) const {
    if (count == 0) return;
    const std::shared_ptr<ThreadPool> pool = process_pool();
    // Fewer chunks than threads: chunks that are not decoded block by block spread their
    // blocks over the pool themselves, one chunk at a time.
    const bool few = count < pool->size();
    std::vector<BlockJob> jobs(count);
    std::vector<OpenedChunk> opened(count);
    // The window's reads from the device. Declared after the files it reads: it ends first,
    // waiting for any read still in flight.
    ReadBatch batch(cancel);
    enum : uint8_t { kDone = 0, kPlanned = 1, kRetry = 2 };
    std::vector<uint8_t> state(count, kDone);
    // Round 1, the I/O stage: every file of the window is opened and what is not in the page
    // cache starts to be read ahead, before any chunk waits for the device.
    // Chunks whose file could not be opened for want of descriptors go to `retry`; without
    // `retry` (run's last try) the error is the read's.
    const auto or_retry = [&](std::size_t i, const auto& step) {
        try {
            step();
        } catch (const ChunkIoError& e) {
            if (retry == nullptr || !out_of_descriptors(e.error_number())) throw;
            opened[i] = OpenedChunk();  // closes anything it opened
            jobs[i] = BlockJob();
            state[i] = kRetry;
        }
    };
    const std::function<void(std::size_t)> open_task = [&](std::size_t i) {
        or_retry(i, [&] { decoder_.open_ahead(tasks[i].coords, opened[i], batch); });
    };
    // Round 2: headers and block offsets read and validated; chunks that are missing, small,
    // raw or not zstd are done here; the others are planned into block jobs.
    const std::function<void(std::size_t)> plan_task = [&](std::size_t i) {
        if (state[i] == kRetry) return;
        or_retry(i, [&] {
            state[i] =
                decoder_.process_or_plan(tasks[i].coords, tasks[i].stitches, tasks[i].n, opened[i],
                                         batch, jobs[i], few ? pool.get() : nullptr, &cancel)
                    ? kPlanned
                    : kDone;
        });
        opened[i] = OpenedChunk();  // closes a file process_or_plan did not keep
    };
    // Each round's remote reads are queued at its end, those of one object (a shard's inner
    // chunks) merged into few requests.
    const auto round = [&](const std::function<void(std::size_t)>& task) {
        HeldReads held(batch);
        if (few) {
            for (std::size_t i = 0; i < count; ++i) {
                cancel.check();
                task(i);
            }
        } else {
            pool->parallel_for(count, task, &cancel);
        }
        held.flush();
    };
    round(open_task);
    round(plan_task);
    // Round 3, decoding. Blocks in the page cache first (read through the mapping or with
    // pread), the largest compressed block first: its size predicts its decoding time, and
    // longest-first keeps the last tasks short. Then the blocks read from the device, a read
    // (a piece of one chunk: one or a few blocks) at a time in the order the reads arrive:
    // decoding follows the device instead of waiting for any one read. A remote response is
    // handed out block by block as it streams in.
    using Item = std::pair<uint32_t, uint32_t>;           // (job, block index)
    std::vector<Item> blocks;                             // in the cache
    std::vector<std::vector<std::vector<Item>>> by_read;  // per ticket, per part
    std::size_t reads = 0;                                // parts of tickets
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        if (state[i] != kPlanned) continue;
        const BlockJob& j = jobs[i];
        for (std::size_t k = 0; k < j.blocks.size(); ++k) {
            const auto item = std::make_pair(static_cast<uint32_t>(i), static_cast<uint32_t>(k));
            if (j.reads.empty()) {
                blocks.push_back(item);
                continue;
            }
            const std::size_t t = j.reads[k].ticket;
            const std::size_t part = j.reads[k].part;
            if (t >= by_read.size()) by_read.resize(batch.size());
            if (part >= by_read[t].size()) by_read[t].resize(part + 1);
            if (by_read[t][part].empty()) ++reads;
            by_read[t][part].push_back(item);
        }
    }
    if (!blocks.empty() || reads > 0) {
        const auto compressed = [&](const Item& w) {
            const BlockJob& j = jobs[w.first];
            const BlockExtent& e = j.extents[static_cast<std::size_t>(j.blocks[w.second])];
            return e.end - e.start;
        };
        std::stable_sort(blocks.begin(), blocks.end(), [&](const auto& x, const auto& y) {
            return compressed(x) > compressed(y);
        });
        // Blocks still to decode per chunk: the task that decodes a chunk's last block
        // finishes the chunk (checks its mapping, releases its reads, closes its file)
        // rather than this thread.
        std::vector<std::atomic<std::size_t>> left(count);
        for (std::size_t i = 0; i < count; ++i)
            left[i].store(state[i] == kPlanned ? jobs[i].blocks.size() : 0,
                          std::memory_order_relaxed);
        const auto decode = [&](const Item& w) {
            BlockJob& job = jobs[w.first];
            decoder_.decode_block(job, w.second);
            if (left[w.first].fetch_sub(1, std::memory_order_acq_rel) == 1)
                decoder_.finish_job(job);
        };
        const std::function<void(std::size_t)> block_task = [&](std::size_t i) {
            if (i < blocks.size()) {
                decode(blocks[i]);
                return;
            }
            const ReadBatch::Arrival a = batch.next_arrived();
            if (a.ticket >= by_read.size() || a.part >= by_read[a.ticket].size()) return;
            for (const auto& w : by_read[a.ticket][a.part]) decode(w);
        };
        pool->parallel_for(blocks.size() + reads, block_task, &cancel);
    }
    for (std::size_t i = 0; i < count; ++i)
        if (state[i] == kRetry) retry->push_back(tasks[i]);
}

void CropReader::read_crops(const int64_t* starts, std::size_t n,
                            const std::vector<int64_t>& crop_shape, void* out,
                            std::size_t out_nbytes, bool fill_outside, const uint8_t* fill,
                            const CancelFlags& cancel) const {
    const ScratchRelease release;
    const bool stream = out_nbytes > stream_threshold();  // the output cannot stay in cache
    CropPlan plan(spec_, chunk_strides_, starts, n, crop_shape, static_cast<uint8_t*>(out),
                  out_nbytes, fill_outside, fill, stream);
    WorkWindow w;
    while (plan.next(w, kWindowPieces)) {
        cancel.check();
        run(w.tasks.data(), w.tasks.size(), cancel);
    }
}

std::size_t CropReader::prefetch(const int64_t* starts, std::size_t n,
                                 const std::vector<int64_t>& crop_shape, bool fill_outside,
                                 std::size_t budget, const CancelFlags& cancel) const {
    std::size_t crop_bytes = spec_.itemsize;
    for (int64_t c : crop_shape) {
        if (c < 0) throw std::invalid_argument("crop shape must not be negative");
        if (__builtin_mul_overflow(crop_bytes, static_cast<std::size_t>(c), &crop_bytes))
            throw std::invalid_argument("crop is larger than 2**64 bytes");
    }
    // Planned over one crop's worth of address space that is never written (nothing is
    // stitched): the plan yields each window's chunks once.
    const std::unique_ptr<uint8_t[]> sink(new uint8_t[std::max<std::size_t>(crop_bytes, 1)]);
    const std::vector<uint8_t> fill(spec_.itemsize, 0);
    CropPlan plan(spec_, chunk_strides_, starts, n, crop_shape, sink.get(), crop_bytes,
                  fill_outside, fill.data(), /*stream=*/false, /*overlay=*/true);
    WorkWindow w;
    std::size_t asked = 0;
    if (store_) {
        // Object store: a task per chunk on the fetch-ahead threads, each holding the reader.
        const std::shared_ptr<const CropReader> self = weak_from_this().lock();
        if (!self) return 0;           // not held by a shared_ptr: nothing can outlive this call
        process_prefetched().sweep();  // what earlier reads took: not for this one
        const FetchCosts costs = store_->costs();
        const auto estimate = static_cast<std::size_t>(
            costs.object_size > 0 ? costs.object_size : static_cast<double>(kRemoteFirstRead));
        auto left = std::make_shared<std::atomic<std::size_t>>(budget);
        while (asked < budget && plan.next(w, kWindowPieces)) {
            AheadChunks chunks;
            for (const ChunkTask& t : w.tasks) {
                cancel.check();
                chunks.push_back(std::make_shared<const AheadChunk>(t, spec_.ndim()));
                asked += estimate;
                if (asked >= budget) break;
            }
            if (shards_) {
                // Inner chunks of one shard whose headers are kept: their ranges merged into
                // few requests, as a read merges them (the rest chunk by chunk).
                run_ahead([self, left, chunks = std::move(chunks)] {
                    self->fetch_ahead_shards(chunks, left);
                });
                continue;
            }
            for (std::shared_ptr<const AheadChunk>& c : chunks)
                run_ahead([self, left, c = std::move(c)] {
                    self->decoder_.fetch_ahead_chunk(c->coords.data(), c->stitches.data(),
                                                     c->stitches.size(), *left);
                });
        }
        return std::min(asked, budget);
    }
    while (asked < budget && plan.next(w, kWindowPieces)) {
        for (const ChunkTask& t : w.tasks) {
            cancel.check();
            asked += decoder_.prefetch_chunk(t.coords, t.stitches, t.n);
            if (asked >= budget) break;
        }
    }
    return asked;
}

CropReader::AheadChunk::AheadChunk(const ChunkTask& t, std::size_t ndim)
    : coords(t.coords, t.coords + ndim), stitches(t.stitches, t.stitches + t.n) {
    std::size_t total = 0;
    for (const Stitch& st : stitches) total += 3 * st.region.ndim;
    dims.resize(total);
    int64_t* at = dims.data();
    const auto own = [&](int64_t*& p, std::size_t n) {
        if (p != nullptr) std::copy(p, p + n, at);
        p = at;
        at += n;
    };
    for (Stitch& st : stitches) {
        const std::size_t n = st.region.ndim;
        own(st.region.counts, n);
        own(st.region.src_strides, n);
        own(st.region.dst_strides, n);
    }
}

void CropReader::fetch_ahead_shards(const AheadChunks& chunks,
                                    const std::shared_ptr<std::atomic<std::size_t>>& left) const {
    const std::shared_ptr<const CropReader> self = weak_from_this().lock();
    if (!self) return;
    std::vector<std::pair<std::string, ByteRange>> wanted;  // (shard key, range in it)
    std::string key;
    std::vector<ByteRange> ranges;
    for (const std::shared_ptr<const AheadChunk>& c : chunks) {
        bool kept = false;
        try {
            kept = decoder_.kept_block_ranges(c->coords.data(), c->stitches.data(),
                                              c->stitches.size(), key, ranges);
        } catch (...) {
            // The read reports it.
        }
        if (kept) {
            for (const ByteRange& r : ranges) wanted.emplace_back(key, r);
            continue;
        }
        run_ahead([self, left, c] {
            self->decoder_.fetch_ahead_chunk(c->coords.data(), c->stitches.data(),
                                             c->stitches.size(), *left);
        });
    }
    std::sort(wanted.begin(), wanted.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first < b.first : a.second.start < b.second.start;
    });
    merge_runs(
        wanted.size(), [&](std::size_t k) { return wanted[k].second.start; },
        [&](std::size_t k) { return wanted[k].second.end; }, kRemoteMergeGap, kRemoteReadPiece,
        [&](std::size_t i, std::size_t j) { return wanted[j].first == wanted[i].first; },
        [&](std::size_t i, std::size_t, std::size_t lo, std::size_t hi) {
            run_ahead([self, left, key = wanted[i].first, lo, hi] {
                self->decoder_.store().fetch_ahead(key, lo, hi - lo, nullptr, *left);
            });
        });
}

double CropReader::decode_seconds(const int64_t* starts, std::size_t n,
                                  const std::vector<int64_t>& crop_shape, bool shared,
                                  bool fill_outside) const {
    const ScratchRelease release;
    std::size_t crop_bytes = spec_.itemsize;
    for (int64_t c : crop_shape) {
        if (c < 0) throw std::invalid_argument("crop shape must not be negative");
        if (__builtin_mul_overflow(crop_bytes, static_cast<std::size_t>(c), &crop_bytes))
            throw std::invalid_argument("crop is larger than 2**64 bytes");
    }
    const std::vector<uint8_t> fill(spec_.itemsize, 0);
    // Every crop is planned into the same one-crop buffer: nothing is stitched.
    std::vector<uint8_t> sink(crop_bytes);
    CropPlan plan(spec_, chunk_strides_, starts, n, crop_shape, sink.data(), crop_bytes,
                  fill_outside, fill.data(), /*stream=*/false, /*overlay=*/true);
    WorkWindow w;
    double total = 0.0;
    while (plan.next(w, kWindowPieces, /*one_crop=*/!shared))
        for (const ChunkTask& t : w.tasks)
            total += decoder_.decode_seconds(t.coords, t.stitches, t.n);
    return total;
}

}  // namespace zarrcrop
