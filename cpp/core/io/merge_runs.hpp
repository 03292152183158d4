// One rule for turning byte ranges into fewer reads: consecutive ranges (sorted by start) that
// lie within `gap` bytes of each other join one read, as long as it stays within `max_len`.
// Used by block reads, held remote reads, and prefetch of blocks and of shards.
#pragma once

#include <algorithm>
#include <cstddef>

namespace zarrcrop {

// Items 0..n-1, sorted by start within each object: start(i) and end(i) their byte range,
// joinable(i, j) whether item j may share a read with item i (the same object). Calls
// emit(i, j, lo, hi) for each run [i, j) read as bytes [lo, hi).
template <class Start, class End, class Joinable, class Emit>
void merge_runs(std::size_t n, Start start, End end, std::size_t gap, std::size_t max_len,
                Joinable joinable, Emit emit) {
    for (std::size_t i = 0; i < n;) {
        const std::size_t lo = start(i);
        std::size_t hi = end(i);
        std::size_t j = i + 1;
        while (j < n && joinable(i, j) && start(j) <= hi + gap &&
               std::max<std::size_t>(hi, end(j)) - lo <= max_len) {
            hi = std::max<std::size_t>(hi, end(j));
            ++j;
        }
        emit(i, j, lo, hi);
        i = j;
    }
}

}  // namespace zarrcrop
