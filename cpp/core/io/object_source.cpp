#include "io/object_source.hpp"

#include <algorithm>
#include <chrono>

#include "io/prefetched_bytes.hpp"

namespace zarrcrop {

namespace {

// Weight of a new observation in the averages: recent enough to follow a network that
// changes, smooth enough that one slow request does not flip a decision.
constexpr double kWeight = 0.1;

// Takes `len` off `budget` when it has that much left.
bool take(std::atomic<std::size_t>& budget, std::size_t len) {
    std::size_t left = budget.load();
    do {
        if (left < len) return false;
    } while (!budget.compare_exchange_weak(left, left - len));
    return true;
}

void blend(double& average, double sample) {
    average = average == 0 ? sample : (1 - kWeight) * average + kWeight * sample;
}

}  // namespace

ObjectSource::ObjectSource(std::string root, FetchFn fetch)
    : root_(std::move(root)), fetch_(std::move(fetch)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

ObjectRange ObjectSource::fetch(const std::string& key, std::size_t offset, std::size_t len,
                                bool from_end, uint8_t* dst, const FetchProgress* progress) const {
    ObjectRange got;
    if (!from_end && process_prefetched().serve(url_of(key), offset, len, got, dst, /*take=*/true))
        return got;
    return fetch_direct(key, offset, len, from_end, dst, from_end ? nullptr : progress);
}

std::optional<ObjectRange> ObjectSource::fetch_ahead(const std::string& key, std::size_t offset,
                                                     std::size_t len, std::vector<uint8_t>* copy,
                                                     std::atomic<std::size_t>& budget) const {
    PrefetchedBytes& held = process_prefetched();
    const std::string url = url_of(key);
    for (;;) {
        bool reserved = false;
        const PrefetchedBytes::Cover cover = held.reserve(url, offset, len, reserved);
        if (cover != PrefetchedBytes::Cover::None) {
            // Held or in flight: wait for it and look (a fetch that failed meanwhile is
            // forgotten: try again).
            ObjectRange got;
            if (copy != nullptr) copy->resize(len);
            if (held.serve(url, offset, len, got, copy ? copy->data() : nullptr,
                           /*take=*/false)) {
                if (copy != nullptr) copy->resize(got.found ? got.bytes : 0);
                return got;
            }
            continue;
        }
        if (!reserved) return std::nullopt;
        if (!take(budget, len)) {
            held.drop(url, offset);
            return std::nullopt;
        }
        std::vector<uint8_t> bytes(len);
        ObjectRange got;
        try {
            got = fetch_direct(key, offset, len, false, bytes.data(), nullptr);
        } catch (...) {
            held.drop(url, offset);
            throw;
        }
        if (got.found && got.offset != offset) {  // not what was asked for: the read will say
            held.drop(url, offset);
            return got;
        }
        bytes.resize(got.found ? std::min(got.bytes, len) : 0);
        budget.fetch_add(len - bytes.size());  // asked for more than the object had
        if (copy != nullptr) *copy = bytes;
        held.fill(url, offset, got, std::move(bytes));
        return got;
    }
}

ObjectRange ObjectSource::fetch_direct(const std::string& key, std::size_t offset, std::size_t len,
                                       bool from_end, uint8_t* dst,
                                       const FetchProgress* progress) const {
    const auto start = std::chrono::steady_clock::now();
    ObjectRange got = fetch_(key, offset, len, from_end, dst, progress);
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
