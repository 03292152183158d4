#include "plan/crop_plan.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace zarrcrop {

namespace {

std::string format_coords(const int64_t* v, std::size_t n) {
    std::string s = "(";
    for (std::size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + (n == 1 ? ",)" : ")");
}

// A crop's part inside the array along one dimension: [lo, hi), and whether it is cut.
struct Extent {
    int64_t lo;
    int64_t hi;
    bool clipped;
};

Extent clip(int64_t start, int64_t size, int64_t extent) {
    // start + size may overflow for hostile starts: such a crop ends past the array.
    int64_t end = 0;
    const bool overflow = __builtin_add_overflow(start, size, &end);
    const int64_t lo = std::max<int64_t>(start, 0);
    const int64_t hi = overflow ? extent : std::min<int64_t>(end, extent);
    return Extent{lo, hi, overflow || lo != start || hi != end};
}

// Below this many pieces a batch is one window: no need to order its crops.
constexpr uint64_t kOrderAbove = 4096;

}  // namespace

Stitch make_stitch(const DimPiece* pieces, const int64_t* steps, std::size_t ndim,
                   std::size_t itemsize, const int64_t* chunk_strides, uint8_t* out,
                   const int64_t* out_strides, bool stream, RegionArena& arena) {
    Stitch st;
    arena.allocate(st.region, ndim);
    st.region.itemsize = itemsize;
    st.region.stream = stream;
    int64_t dst_offset = 0;
    for (std::size_t d = 0; d < ndim; ++d) {
        const DimPiece& p = pieces[d];
        st.region.counts[d] = p.count;
        st.region.src_strides[d] = steps[d] * chunk_strides[d];
        st.region.dst_strides[d] = out_strides[d];
        st.src_offset += p.local_start * chunk_strides[d];
        dst_offset += p.out_start * out_strides[d];
    }
    st.dst = out + dst_offset;
    const bool empty = st.region.simplify() == 0;
    arena.shrink_last(st.region);
    if (empty) st.dst = nullptr;  // nothing to copy: callers drop it
    return st;
}

void group_by_chunk(WorkWindow& w, std::size_t ndim) {
    w.tasks.clear();
    w.coords.clear();
    w.stitches.clear();
    const std::size_t n = w.pieces.size();
    w.order.resize(n);
    std::iota(w.order.begin(), w.order.end(), std::size_t{0});
    const int64_t* pc = w.piece_coords.data();
    const auto less = [&](std::size_t a, std::size_t b) {
        return std::lexicographical_compare(pc + a * ndim, pc + (a + 1) * ndim, pc + b * ndim,
                                            pc + (b + 1) * ndim);
    };
    std::stable_sort(w.order.begin(), w.order.end(), less);
    w.stitches.reserve(n);
    std::vector<std::size_t> starts;  // first stitch of each task
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = w.order[k];
        if (k == 0 || less(w.order[k - 1], i)) {
            starts.push_back(w.stitches.size());
            w.coords.insert(w.coords.end(), pc + i * ndim, pc + (i + 1) * ndim);
        }
        w.stitches.push_back(w.pieces[i]);
    }
    starts.push_back(w.stitches.size());
    for (std::size_t t = 0; t + 1 < starts.size(); ++t)
        w.tasks.push_back(ChunkTask{w.coords.data() + t * ndim, w.stitches.data() + starts[t],
                                    starts[t + 1] - starts[t]});
}

CropPlan::CropPlan(const ArraySpec& spec, const std::vector<int64_t>& chunk_strides,
                   const int64_t* starts, std::size_t n, const std::vector<int64_t>& crop_shape,
                   uint8_t* out, std::size_t out_nbytes, bool fill_outside, const uint8_t* fill,
                   bool stream, bool overlay)
    : spec_(spec),
      chunk_strides_(chunk_strides),
      starts_(starts),
      n_(n),
      crop_shape_(crop_shape),
      out_(out),
      fill_(fill),
      stream_(stream) {
    const std::size_t ndim = spec_.ndim();
    if (crop_shape.size() != ndim)
        throw std::invalid_argument("crop shape has " + std::to_string(crop_shape.size()) +
                                    " dimensions, array has " + std::to_string(ndim));
    std::size_t crop_bytes = spec_.itemsize;
    bool huge = false;
    for (int64_t c : crop_shape) {
        if (c < 0) throw std::invalid_argument("crop shape must not be negative");
        huge = huge || __builtin_mul_overflow(crop_bytes, static_cast<std::size_t>(c), &crop_bytes);
    }
    std::size_t all_bytes = 0;
    const bool too_many =
        huge || __builtin_mul_overflow(crop_bytes, overlay ? std::size_t{1} : n, &all_bytes);
    if (too_many || all_bytes != out_nbytes)
        throw std::invalid_argument(
            "output buffer has " + std::to_string(out_nbytes) + " bytes, the crops need " +
            (too_many ? std::string("more than 2**64") : std::to_string(all_bytes)));
    crop_bytes_ = crop_bytes;
    crop_stride_ = overlay ? 0 : crop_bytes;

    // Every crop checked before anything is read or written. Also counts the pieces.
    uint64_t total_pieces = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const int64_t* start = starts + i * ndim;
        bool clipped = false;
        uint64_t pieces = 1;
        for (std::size_t d = 0; d < ndim; ++d) {
            const Extent e = clip(start[d], crop_shape[d], spec_.shape[d]);
            clipped = clipped || e.clipped;
            if (e.hi <= e.lo) {
                pieces = 0;
            } else if (pieces != 0) {
                const int64_t c = spec_.chunks[d];
                const auto runs = static_cast<uint64_t>((e.hi - 1) / c - e.lo / c + 1);
                if (__builtin_mul_overflow(pieces, runs, &pieces)) pieces = UINT64_MAX;
            }
        }
        if (clipped && !fill_outside)
            throw std::out_of_range(
                "crop " + std::to_string(i) + " starting at " + format_coords(start, ndim) +
                " with shape " + format_coords(crop_shape.data(), ndim) +
                " reaches outside the array of shape " + format_coords(spec_.shape.data(), ndim));
        if (crop_bytes == 0) pieces = 0;
        if (__builtin_add_overflow(total_pieces, pieces, &total_pieces)) total_pieces = UINT64_MAX;
    }
    const int64_t unit = static_cast<int64_t>(spec_.itemsize);
    out_strides_.assign(ndim, unit);
    for (std::size_t d = ndim; d-- > 1;) out_strides_[d - 1] = out_strides_[d] * crop_shape[d];
    unit_steps_.assign(ndim, 1);
    dims_.resize(ndim);
    lo_.resize(ndim);
    if (total_pieces > kOrderAbove && n > 1) {
        // Crops ordered by the chunk of their first element inside the array.
        order_.resize(n);
        std::iota(order_.begin(), order_.end(), std::size_t{0});
        const auto key = [&](std::size_t i, std::size_t d) {
            const int64_t s = std::max<int64_t>(starts_[i * ndim + d], 0);
            return s / spec_.chunks[d];
        };
        std::stable_sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t b) {
            for (std::size_t d = 0; d < ndim; ++d) {
                const int64_t ka = key(a, d);
                const int64_t kb = key(b, d);
                if (ka != kb) return ka < kb;
            }
            return false;
        });
    }
}

bool CropPlan::start_crop(std::size_t i) {
    const std::size_t ndim = spec_.ndim();
    if (crop_bytes_ == 0) return false;
    const int64_t* start = starts_ + i * ndim;
    uint8_t* crop_out = out_ + i * crop_stride_;
    bool clipped = false;
    bool empty = false;
    pieces_ = 1;
    for (std::size_t d = 0; d < ndim; ++d) {
        const Extent e = clip(start[d], crop_shape_[d], spec_.shape[d]);
        clipped = clipped || e.clipped;
        if (e.hi <= e.lo) {
            empty = true;
            continue;
        }
        dims_[d] = DimPlan(DimSelection{e.lo, 1, e.hi - e.lo}, spec_.shape[d], spec_.chunks[d], d);
        lo_[d] = e.lo;
        pieces_ *= static_cast<uint64_t>(dims_[d].size());
    }
    if (clipped) {
        // Outside parts get the fill value; the stitches then overwrite the inside.
        LocalRegion whole(1, spec_.itemsize);
        whole.region.counts[0] = static_cast<int64_t>(crop_bytes_ / spec_.itemsize);
        whole.region.src_strides[0] = whole.region.dst_strides[0] =
            static_cast<int64_t>(spec_.itemsize);
        fill_strided(crop_out, whole.region, fill_);
    }
    piece_ = 0;
    return !empty;
}

bool CropPlan::next(WorkWindow& w, std::size_t max_pieces, bool one_crop) {
    const std::size_t ndim = spec_.ndim();
    w.pieces.clear();
    w.piece_coords.clear();
    w.arena.clear();
    if (max_pieces == 0) max_pieces = 1;
    DimPiece which[kMaxDims];
    while (w.pieces.size() < max_pieces) {
        if (!in_crop_) {
            if (next_crop_ == n_ || (one_crop && !w.pieces.empty())) break;
            crop_ = order_.empty() ? next_crop_ : order_[next_crop_];
            ++next_crop_;
            if (!start_crop(crop_)) continue;
            in_crop_ = true;
        }
        const int64_t* start = starts_ + crop_ * ndim;
        uint8_t* crop_out = out_ + crop_ * crop_stride_;
        for (; piece_ < pieces_ && w.pieces.size() < max_pieces; ++piece_) {
            uint64_t k = piece_;
            for (std::size_t d = ndim; d-- > 0;) {
                const auto runs = static_cast<uint64_t>(dims_[d].size());
                which[d] = dims_[d].piece(static_cast<int64_t>(k % runs));
                which[d].out_start += lo_[d] - start[d];
                k /= runs;
            }
            Stitch st =
                make_stitch(which, unit_steps_.data(), ndim, spec_.itemsize, chunk_strides_.data(),
                            crop_out, out_strides_.data(), stream_, w.arena);
            if (st.dst == nullptr) continue;
            for (std::size_t d = 0; d < ndim; ++d) w.piece_coords.push_back(which[d].chunk);
            w.pieces.push_back(st);
        }
        if (piece_ == pieces_) {
            in_crop_ = false;
            if (one_crop) break;
        }
    }
    group_by_chunk(w, ndim);
    return !w.tasks.empty();
}

}  // namespace zarrcrop
