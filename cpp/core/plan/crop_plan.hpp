// Plans a batch of same-shape crops (read_crops) into chunk tasks. Every crop is checked up
// front; then the (crop, chunk) pieces are produced a bounded window at a time and grouped
// by chunk, so each chunk of a window is read and decoded once for all the crops it feeds,
// and planning memory stays bounded however many crops or pieces there are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "array_spec.hpp"
#include "plan/chunk_plan.hpp"
#include "stitch/stitcher.hpp"

namespace zarrcrop {

// One chunk of a read and what goes where from it.
struct ChunkTask {
    const int64_t* coords;
    const Stitch* stitches;
    std::size_t n;
};

// A window of planned work: chunk tasks and their stitches, grouped by chunk.
struct WorkWindow {
    std::vector<ChunkTask> tasks;
    std::vector<int64_t> coords;   // ndim per task
    std::vector<Stitch> stitches;  // grouped by chunk, in task order
    RegionArena arena;             // the stitches' dimensions
    // Planning scratch: each piece's chunk coordinates and the grouping order.
    std::vector<int64_t> piece_coords;
    std::vector<Stitch> pieces;
    std::vector<std::size_t> order;
};

// Builds the stitch for one chunk: pieces[d] says which part of the chunk goes where.
// `region` storage comes from `arena`; the region is simplified. dst is null when the stitch
// copies nothing.
Stitch make_stitch(const DimPiece* pieces, const int64_t* steps, std::size_t ndim,
                   std::size_t itemsize, const int64_t* chunk_strides, uint8_t* out,
                   const int64_t* out_strides, bool stream, RegionArena& arena);

// Groups w.pieces (with w.piece_coords, ndim each) by chunk into w.tasks / w.coords /
// w.stitches.
void group_by_chunk(WorkWindow& w, std::size_t ndim);

class CropPlan {
public:
    // Checks the crop shape, the output size and every crop (throws std::invalid_argument /
    // std::out_of_range naming the crop before anything is written). Crop i goes to
    // out + i * crop_bytes(); with `overlay`, every crop goes to `out`, one crop's size
    // (benchmarks that stitch nothing). `starts` (n * ndim) must not change while the plan
    // is used: pass a private copy.
    CropPlan(const ArraySpec& spec, const std::vector<int64_t>& chunk_strides,
             const int64_t* starts, std::size_t n, const std::vector<int64_t>& crop_shape,
             uint8_t* out, std::size_t out_nbytes, bool fill_outside, const uint8_t* fill,
             bool stream, bool overlay = false);

    std::size_t crop_bytes() const { return crop_bytes_; }
    // Plans the next window of at most max_pieces pieces (at least one) into w, filling the
    // parts outside the array of the crops it starts; false when every crop is planned.
    // With `one_crop`, a window never holds pieces of two crops.
    bool next(WorkWindow& w, std::size_t max_pieces, bool one_crop = false);

private:
    // Sets cur_ to crop `i`'s per-dimension plans; false if it has no pieces.
    bool start_crop(std::size_t i);

    const ArraySpec& spec_;
    const std::vector<int64_t>& chunk_strides_;
    const int64_t* starts_;
    std::size_t n_;
    std::vector<int64_t> crop_shape_;
    uint8_t* out_;
    std::size_t crop_bytes_ = 0;
    std::size_t crop_stride_ = 0;
    const uint8_t* fill_;
    bool stream_;
    std::vector<int64_t> out_strides_;
    std::vector<int64_t> unit_steps_;
    // The order crops are planned in: grouped by the chunk of their first element, so that
    // crops sharing chunks share windows (only when they need several windows).
    std::vector<std::size_t> order_;
    std::size_t next_crop_ = 0;  // position in order_
    // The crop being planned: its dimensions' runs and the next piece of their product.
    std::size_t crop_ = 0;
    bool in_crop_ = false;
    std::vector<DimPlan> dims_;
    std::vector<int64_t> lo_;  // first array index inside the array, per dimension
    uint64_t piece_ = 0;
    uint64_t pieces_ = 0;
};

}  // namespace zarrcrop
