// Cooperative cancellation of a read. Flags are set from elsewhere (the caller's interrupt
// handling, the interpreter's exit) and polled between tasks, so a read ends within one task
// of being cancelled; its output must then not be used.
#pragma once

#include <atomic>
#include <exception>
#include <thread>

namespace zarrcrop {

// Thrown by a read that stopped because it was cancelled.
class Cancelled : public std::exception {
public:
    const char* what() const noexcept override { return "read cancelled"; }
};

// Up to two flags (any raised cancels); both null: never cancelled. `poll`, when set, runs on
// the thread `poll_thread` (the read's caller) between its tasks and while it waits for
// the pool, at most every few milliseconds: it may raise a flag (e.g. after running a
// signal handler that raised).
struct CancelFlags {
    const std::atomic<bool>* first = nullptr;
    const std::atomic<bool>* second = nullptr;
    void (*poll)() = nullptr;
    std::thread::id poll_thread{};

    bool raised() const noexcept {
        return (first != nullptr && first->load(std::memory_order_relaxed)) ||
               (second != nullptr && second->load(std::memory_order_relaxed));
    }
    // On the polling thread: polls.
    void poll_here() const {
        if (poll != nullptr && std::this_thread::get_id() == poll_thread) poll();
    }
    void check() const {
        poll_here();
        if (raised()) throw Cancelled();
    }
};

}  // namespace zarrcrop
