#include "io/object_source.hpp"

#include <algorithm>
#include <chrono>

namespace zarrcrop {

namespace {

// Weight of a new observation in the averages: recent enough to follow a network that
// changes, smooth enough that one slow request does not flip a decision.
constexpr double kWeight = 0.1;

void blend(double& average, double sample) {
    average = average == 0 ? sample : (1 - kWeight) * average + kWeight * sample;
}

}  // namespace

ObjectSource::ObjectSource(std::string root, FetchFn fetch)
    : root_(std::move(root)), fetch_(std::move(fetch)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

ObjectRange ObjectSource::fetch(const std::string& key, std::size_t offset, std::size_t len,
                                bool from_end, uint8_t* dst) const {
    const auto start = std::chrono::steady_clock::now();
    ObjectRange got = fetch_(key, offset, len, from_end, dst);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::lock_guard<std::mutex> lock(mutex_);
    if (got.bytes <= (64u << 10)) {
        blend(costs_.round_trip, seconds);
    } else if (got.bytes >= (128u << 10) && costs_.round_trip > 0) {
        // The time beyond a round trip is the transfer's (at least a twentieth of a round
        // trip: a far store's jitter must not read as infinite bandwidth).
        const double transfer = std::max(seconds - costs_.round_trip, costs_.round_trip / 20);
        blend(costs_.bytes_per_second, static_cast<double>(got.bytes) / transfer);
    }
    return got;
}

void ObjectSource::note_chunk_size(std::size_t bytes) const {
    std::lock_guard<std::mutex> lock(mutex_);
    blend(costs_.object_size, static_cast<double>(bytes));
}

FetchCosts ObjectSource::costs() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return costs_;
}

}  // namespace zarrcrop
