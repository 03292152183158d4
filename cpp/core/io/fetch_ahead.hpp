// The threads that fetch remote bytes ahead of the reads that will need them (prefetch on an
// object store): a request waits a round trip, so a task per chunk, many at once, each on a
// thread that mostly waits. Per process: fresh after fork(), like the decode pool.
#pragma once

#include <cstddef>
#include <functional>

namespace zarrcrop {

// Runs `task` on one of the process's fetch-ahead threads (kRemoteReadDepth at most, started
// as needed), in the order submitted. A task that throws ends quietly: the read that needs
// its bytes fetches them itself and reports the error.
void run_ahead(std::function<void()> task);
// Waits until no task is queued or running (tests, benchmarks).
void wait_ahead_idle();

}  // namespace zarrcrop
