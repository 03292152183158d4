// The parts of a read that streams in (a remote reply): each needed block is a part, decoded
// once the bytes up to its end have arrived. Shared by block jobs and streamed first reads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace zarrcrop {

// The ends of the parts (the ends of a read's blocks), ascending and distinct.
inline std::vector<std::size_t> distinct_ends(std::vector<std::size_t> ends) {
    std::sort(ends.begin(), ends.end());
    ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
    return ends;
}

// The part whose end is `end` (0 for a read handed out whole).
inline std::size_t part_of(const std::vector<std::size_t>& ends, std::size_t end) {
    if (ends.empty()) return 0;
    return static_cast<std::size_t>(std::lower_bound(ends.begin(), ends.end(), end) - ends.begin());
}

}  // namespace zarrcrop
