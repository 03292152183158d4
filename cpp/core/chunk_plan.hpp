// Maps a strided selection onto the chunk grid: for every dimension, the runs of selected
// indices that fall into one chunk. Tasks are the cartesian product of those runs, addressed
// by a mixed-radix index so that no per-task storage is needed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "array_spec.hpp"

namespace zarrcrop {

// One dimension of a normalized selection: output index i reads array index start + i * step.
// count may be 0; step is never 0 and may be negative (NumPy semantics).
struct DimSelection {
    int64_t start = 0;
    int64_t step = 1;
    int64_t count = 0;
};

// A run of selected indices of one dimension that lie in the same chunk.
struct DimPiece {
    int64_t chunk = 0;        // chunk grid coordinate
    int64_t out_start = 0;    // first output index of the run
    int64_t count = 0;        // number of selected indices in the run
    int64_t local_start = 0;  // first index inside the chunk
};

// The runs of one dimension's selection, chunk by chunk. Throws std::out_of_range when the
// selection reaches outside [0, extent).
std::vector<DimPiece> plan_dimension(const DimSelection& sel, int64_t extent, int64_t chunk,
                                     std::size_t dim);

class ChunkPlan {
public:
    // Throws std::out_of_range when the selection reaches outside the array.
    ChunkPlan(const ArraySpec& spec, const std::vector<DimSelection>& selection);

    std::size_t ndim() const { return pieces_.size(); }
    std::size_t num_tasks() const { return num_tasks_; }
    const std::vector<DimSelection>& selection() const { return selection_; }
    const std::vector<int64_t>& out_shape() const { return out_shape_; }
    // Fills `which[d]` with the piece of dimension d used by task `task`.
    void task_pieces(std::size_t task, const DimPiece** which) const;

private:
    std::vector<DimSelection> selection_;
    std::vector<int64_t> out_shape_;
    std::vector<std::vector<DimPiece>> pieces_;
    std::size_t num_tasks_ = 0;
};

}  // namespace zarrcrop
