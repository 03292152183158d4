// Maps a strided selection onto the chunk grid: for every dimension, the runs of selected
// indices that fall into one chunk. Runs are computed on demand (DimPlan::piece), and tasks
// are the cartesian product of the runs, addressed by a mixed-radix index, so a plan takes
// O(ndim) memory however many chunks the selection touches.
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

// The runs of one dimension's selection, chunk by chunk, in output order.
class DimPlan {
public:
    DimPlan() = default;
    // Throws std::out_of_range when the selection reaches outside [0, extent),
    // std::invalid_argument for step 0 or a negative count.
    DimPlan(const DimSelection& sel, int64_t extent, int64_t chunk, std::size_t dim);

    // Number of runs (0 for an empty selection).
    int64_t size() const { return size_; }
    // Run k, 0 <= k < size().
    DimPiece piece(int64_t k) const;

private:
    // Output index of the first selected index at or past chunk boundary `edge` (in the
    // direction of the selection).
    int64_t first_output_at(int64_t c) const;

    DimSelection sel_;
    int64_t chunk_ = 1;
    int64_t first_chunk_ = 0;  // chunk of the first selected index
    int64_t size_ = 0;
    bool per_index_ = false;  // |step| >= chunk: every selected index is a run of its own
};

class ChunkPlan {
public:
    // Throws std::out_of_range when the selection reaches outside the array.
    ChunkPlan(const ArraySpec& spec, const std::vector<DimSelection>& selection);

    std::size_t ndim() const { return dims_.size(); }
    // Number of (chunk, part) tasks; 0 when the selection is empty.
    std::size_t num_tasks() const { return num_tasks_; }
    const std::vector<int64_t>& out_shape() const { return out_shape_; }
    // Fills which[d] with the run of dimension d used by task `task`.
    void task_pieces(std::size_t task, DimPiece* which) const;

private:
    std::vector<int64_t> out_shape_;
    std::vector<DimPlan> dims_;
    std::size_t num_tasks_ = 0;
};

}  // namespace zarrcrop
