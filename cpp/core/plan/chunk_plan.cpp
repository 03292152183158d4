#include "plan/chunk_plan.hpp"

#include <stdexcept>
#include <string>

namespace zarrcrop {

namespace {

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
    const int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

int64_t ceil_div(int64_t a, int64_t b) {  // a >= 0, b > 0
    return a / b + (a % b != 0 ? 1 : 0);
}

}  // namespace

DimPlan::DimPlan(const DimSelection& sel, int64_t extent, int64_t chunk, std::size_t dim)
    : sel_(sel), chunk_(chunk) {
    if (chunk <= 0) throw std::invalid_argument("chunk size must be positive");
    if (sel.count < 0) throw std::invalid_argument("selection count must not be negative");
    if (sel.count == 0) return;
    if (sel.step == 0) throw std::invalid_argument("slice step cannot be zero");
    // last = start + (count - 1) * step, overflow-checked: hostile selections end outside.
    int64_t reach = 0;
    int64_t last = 0;
    const bool overflow = __builtin_mul_overflow(sel.count - 1, sel.step, &reach) ||
                          __builtin_add_overflow(sel.start, reach, &last);
    if (overflow || sel.start < 0 || sel.start >= extent || last < 0 || last >= extent)
        throw std::out_of_range("selection out of bounds for dimension " + std::to_string(dim) +
                                " with length " + std::to_string(extent));
    first_chunk_ = floor_div(sel.start, chunk);
    const int64_t last_chunk = floor_div(last, chunk);
    const int64_t distance = sel.step > 0 ? sel.step : -sel.step;
    // Steps shorter than a chunk leave no chunk between the first and the last unvisited.
    per_index_ = distance >= chunk;
    size_ = per_index_ ? sel.count
                       : (sel.step > 0 ? last_chunk - first_chunk_ : first_chunk_ - last_chunk) + 1;
}

int64_t DimPlan::first_output_at(int64_t c) const {
    // Chunk c is visited (not the first): its first selected index, as an output index.
    const int64_t distance = sel_.step > 0 ? sel_.step : -sel_.step;
    if (sel_.step > 0) return ceil_div(c * chunk_ - sel_.start, distance);  // c * chunk <= last
    return ceil_div(sel_.start - ((c + 1) * chunk_ - 1), distance);  // (c + 1) * chunk <= start
}

DimPiece DimPlan::piece(int64_t k) const {
    if (per_index_) {
        const int64_t x = sel_.start + k * sel_.step;
        const int64_t c = floor_div(x, chunk_);
        return DimPiece{c, k, 1, x - c * chunk_};
    }
    const int64_t c = sel_.step > 0 ? first_chunk_ + k : first_chunk_ - k;
    const int64_t begin = k == 0 ? 0 : first_output_at(c);
    const int64_t end =
        k + 1 == size_ ? sel_.count : first_output_at(sel_.step > 0 ? c + 1 : c - 1);
    const int64_t x = sel_.start + begin * sel_.step;
    return DimPiece{c, begin, end - begin, x - c * chunk_};
}

ChunkPlan::ChunkPlan(const ArraySpec& spec, const std::vector<DimSelection>& selection) {
    if (selection.size() != spec.ndim())
        throw std::invalid_argument("selection has " + std::to_string(selection.size()) +
                                    " dimensions, array has " + std::to_string(spec.ndim()));
    num_tasks_ = 1;
    for (std::size_t d = 0; d < selection.size(); ++d) {
        dims_.emplace_back(selection[d], spec.shape[d], spec.chunks[d], d);
        out_shape_.push_back(selection[d].count);
        // Runs are at most the selected indices, so an overflow means an impossible output.
        if (__builtin_mul_overflow(num_tasks_, static_cast<std::size_t>(dims_.back().size()),
                                   &num_tasks_))
            throw std::invalid_argument("selection has more than 2**64 chunk parts");
    }
}

void ChunkPlan::task_pieces(std::size_t task, DimPiece* which) const {
    for (std::size_t d = dims_.size(); d-- > 0;) {
        const auto n = static_cast<std::size_t>(dims_[d].size());
        which[d] = dims_[d].piece(static_cast<int64_t>(task % n));
        task /= n;
    }
}

}  // namespace zarrcrop
