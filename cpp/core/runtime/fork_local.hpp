// Per-process state guarded by a mutex, safe across fork(): a forked child gets a fresh State
// on its first use instead of touching a mutex that a parent thread may have held at fork
// time. The parent's State is leaked on purpose in the child (its destructor could block on
// that mutex, or free what the parent's threads were using).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>

namespace zarrcrop {

template <typename State>
class ForkLocal {
public:
    ForkLocal() : owned_(new Owned()) {}
    ~ForkLocal() {
        Owned* o = owned_.load();
        if (o->owner == ::getpid()) delete o;  // else: inherited over fork(), leaked
    }
    ForkLocal(const ForkLocal&) = delete;
    ForkLocal& operator=(const ForkLocal&) = delete;

    // This process's state.
    State& get() {
        Owned* o = owned_.load();
        const pid_t me = ::getpid();
        if (o->owner == me) return o->state;
        auto* fresh = new Owned();
        if (owned_.compare_exchange_strong(o, fresh)) return fresh->state;
        delete fresh;  // another thread of this child won the race; `o` is its state
        return o->state;
    }

private:
    struct Owned {
        State state;
        pid_t owner = ::getpid();
    };
    std::atomic<Owned*> owned_;
};

}  // namespace zarrcrop
