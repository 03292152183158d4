// Cooperative cancellation of a read. Flags are set from elsewhere (a signal handler, the
// interpreter's exit) and polled between tasks, so a read ends within one task of being
// cancelled; its output must then not be used.
#pragma once

#include <atomic>
#include <exception>

namespace zarrcrop {

// Thrown by a read that stopped because it was cancelled.
class Cancelled : public std::exception {
public:
    const char* what() const noexcept override { return "read cancelled"; }
};

// Up to two flags (any raised cancels); both null: never cancelled.
struct CancelFlags {
    const std::atomic<bool>* first = nullptr;
    const std::atomic<bool>* second = nullptr;

    bool raised() const noexcept {
        return (first != nullptr && first->load(std::memory_order_relaxed)) ||
               (second != nullptr && second->load(std::memory_order_relaxed));
    }
    void check() const {
        if (raised()) throw Cancelled();
    }
};

}  // namespace zarrcrop
