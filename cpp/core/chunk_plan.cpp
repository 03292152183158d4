#include "chunk_plan.hpp"

#include <stdexcept>
#include <string>

namespace zarrcrop {

namespace {

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

}  // namespace

std::vector<DimPiece> plan_dimension(const DimSelection& sel, int64_t extent, int64_t chunk,
                                     std::size_t dim) {
    std::vector<DimPiece> pieces;
    if (sel.count == 0) return pieces;
    if (sel.step == 0) throw std::invalid_argument("slice step cannot be zero");
    const int64_t last = sel.start + (sel.count - 1) * sel.step;
    if (sel.count < 0 || sel.start < 0 || sel.start >= extent || last < 0 || last >= extent)
        throw std::out_of_range("selection out of bounds for dimension " + std::to_string(dim) +
                                " with length " + std::to_string(extent));
    int64_t i = 0;
    while (i < sel.count) {
        const int64_t x = sel.start + i * sel.step;
        const int64_t c = floor_div(x, chunk);
        // Last output index whose array index stays inside chunk c.
        int64_t room;
        if (sel.step > 0)
            room = ((c + 1) * chunk - 1 - x) / sel.step;
        else
            room = (x - c * chunk) / (-sel.step);
        const int64_t n = std::min(sel.count - i, room + 1);
        pieces.push_back(DimPiece{c, i, n, x - c * chunk});
        i += n;
    }
    return pieces;
}

ChunkPlan::ChunkPlan(const ArraySpec& spec, const std::vector<DimSelection>& selection)
    : selection_(selection) {
    if (selection.size() != spec.ndim())
        throw std::invalid_argument("selection has " + std::to_string(selection.size()) +
                                    " dimensions, array has " + std::to_string(spec.ndim()));
    num_tasks_ = 1;
    for (std::size_t d = 0; d < selection.size(); ++d) {
        pieces_.push_back(plan_dimension(selection[d], spec.shape[d], spec.chunks[d], d));
        out_shape_.push_back(selection[d].count);
        num_tasks_ *= pieces_.back().size();
    }
}

void ChunkPlan::task_pieces(std::size_t task, const DimPiece** which) const {
    for (std::size_t d = pieces_.size(); d-- > 0;) {
        const std::size_t n = pieces_[d].size();
        which[d] = &pieces_[d][task % n];
        task /= n;
    }
}

}  // namespace zarrcrop
