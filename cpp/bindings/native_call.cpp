#include "native_call.hpp"

#include <Python.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

#include "../core/runtime/thread_pool.hpp"

namespace zarrcrop_bindings {

namespace {

// Raised by the SIGINT handler: main-thread work runs Python's handlers at its next poll.
std::atomic<bool> g_interrupted{false};
// Raised when a handler run by that poll raised (KeyboardInterrupt): cancels the work.
std::atomic<bool> g_main_cancel{false};
// The main thread's state while its work runs without the GIL (poll_interrupt takes it back).
thread_local PyThreadState* t_saved = nullptr;
// Raised by the atexit hook: cancels work in flight; no thread takes the GIL back after it.
std::atomic<bool> g_exiting{false};
// Threads between the end of their work and having the GIL again.
std::atomic<int> g_reacquiring{0};
// Python's main thread (PyThread_get_thread_ident), the one KeyboardInterrupt goes to.
std::atomic<unsigned long> g_main_thread{0};

// The handler we chained to, in two slots so the signal handler always reads a whole one.
struct sigaction g_prev[2];
std::atomic<int> g_prev_slot{0};

void on_sigint(int sig, siginfo_t* info, void* ctx) {
    g_interrupted.store(true, std::memory_order_relaxed);
    const struct sigaction& prev = g_prev[g_prev_slot.load(std::memory_order_acquire)];
    if ((prev.sa_flags & SA_SIGINFO) != 0) {
        prev.sa_sigaction(sig, info, ctx);
    } else if (prev.sa_handler != SIG_IGN && prev.sa_handler != SIG_DFL) {
        prev.sa_handler(sig);
    } else if (prev.sa_handler == SIG_DFL) {  // not installed over it; for completeness
        ::signal(sig, SIG_DFL);
        ::raise(sig);
    }
}

bool is_ours(const struct sigaction& a) {
    return (a.sa_flags & SA_SIGINFO) != 0 && a.sa_sigaction == &on_sigint;
}

// Chains on_sigint in front of the current SIGINT handler (Python's, or one set since with
// signal.signal), unless that is SIG_DFL or SIG_IGN (nothing to chain to; the default kills).
// Looked at once per kRecheck at most (a syscall; small reads take a few microseconds): a
// handler set with signal.signal just before a read is chained from the next check on.
void ensure_sigint_handler() {
    constexpr auto kRecheck = std::chrono::milliseconds(50);
    static std::atomic<int64_t> next_check{0};
    const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now < next_check.load(std::memory_order_relaxed)) return;
    next_check.store(
        now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(kRecheck).count(),
        std::memory_order_relaxed);
    struct sigaction cur {};
    if (::sigaction(SIGINT, nullptr, &cur) != 0 || is_ours(cur)) return;
    if ((cur.sa_flags & SA_SIGINFO) == 0 &&
        (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))
        return;
    const int idle = 1 - g_prev_slot.load(std::memory_order_acquire);
    g_prev[idle] = cur;
    g_prev_slot.store(idle, std::memory_order_release);
    struct sigaction ours = cur;
    ours.sa_sigaction = &on_sigint;
    ours.sa_flags = (cur.sa_flags & ~SA_RESETHAND) | SA_SIGINFO;
    ::sigaction(SIGINT, &ours, nullptr);
}

// Puts the chained handler back (at exit: finalization expects its own).
void remove_sigint_handler() {
    struct sigaction cur {};
    if (::sigaction(SIGINT, nullptr, &cur) == 0 && is_ours(cur))
        ::sigaction(SIGINT, &g_prev[g_prev_slot.load(std::memory_order_acquire)], nullptr);
}

[[noreturn]] void sleep_until_exit() {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

// Takes the GIL back unless the interpreter is exiting (see the header).
void reacquire(PyThreadState* ts) {
    g_reacquiring.fetch_add(1, std::memory_order_seq_cst);
    if (g_exiting.load(std::memory_order_seq_cst)) {
        g_reacquiring.fetch_sub(1, std::memory_order_seq_cst);
        sleep_until_exit();
    }
    PyEval_RestoreThread(ts);
    g_reacquiring.fetch_sub(1, std::memory_order_seq_cst);
}

void at_exit() {
    // With the GIL held, so no thread is between a check of g_exiting and releasing the GIL.
    g_exiting.store(true, std::memory_order_seq_cst);
    remove_sigint_handler();
    // Threads that saw g_exiting unset are taking the GIL: let them, then finalization goes on.
    PyThreadState* ts = PyEval_SaveThread();
    while (g_reacquiring.load(std::memory_order_seq_cst) > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    PyEval_RestoreThread(ts);
}

void after_fork_child() {
    // Only the forking thread exists here: it is Python's main thread now (as CPython makes
    // it), and no other thread is taking the GIL.
    g_main_thread.store(static_cast<unsigned long>(pthread_self()));
    g_reacquiring.store(0);
    g_interrupted.store(false);
}

// CancelFlags::poll of main-thread work: after a SIGINT, takes the GIL briefly and runs
// Python's signal handlers; if one raised, the exception stays set and the work is cancelled,
// otherwise the work goes on (as Python resumes an interrupted sleep).
void poll_interrupt() {
    if (!g_interrupted.exchange(false, std::memory_order_relaxed)) return;
    PyEval_RestoreThread(t_saved);
    const int raised = PyErr_CheckSignals();
    t_saved = PyEval_SaveThread();
    if (raised != 0) g_main_cancel.store(true, std::memory_order_relaxed);
}

void warn_thread_shortfall() {
    if (!zarrcrop::thread_warning_pending()) return;
    const std::string text = zarrcrop::take_thread_warning();
    if (!text.empty() && PyErr_WarnEx(PyExc_RuntimeWarning, text.c_str(), 1) != 0)
        throw py::error_already_set();  // warnings turned into errors
}

}  // namespace

void run_native(const std::function<void(const zarrcrop::CancelFlags&)>& work) {
    const bool main = PyThread_get_thread_ident() == g_main_thread.load();
    if (main) {
        ensure_sigint_handler();
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
    if (g_exiting.load(std::memory_order_seq_cst)) {  // atexit ran: keep the GIL
        work(zarrcrop::CancelFlags{});
        warn_thread_shortfall();
        return;
    }
    zarrcrop::CancelFlags flags{nullptr, &g_exiting};
    if (main) {
        g_interrupted.store(false, std::memory_order_relaxed);
        g_main_cancel.store(false, std::memory_order_relaxed);
        flags.first = &g_main_cancel;
        flags.poll = &poll_interrupt;
        flags.poll_thread = std::this_thread::get_id();
    }
    std::exception_ptr error;
    PyThreadState* ts = PyEval_SaveThread();
    if (main) t_saved = ts;
    try {
        work(flags);
    } catch (...) {
        error = std::current_exception();
    }
    if (main) ts = t_saved;  // poll_interrupt may have taken and released the GIL
    reacquire(ts);
    // A handler that raised (KeyboardInterrupt) wins over the work's own outcome.
    if (PyErr_Occurred() != nullptr) throw py::error_already_set();
    if (error) {
        try {
            std::rethrow_exception(error);
        } catch (const zarrcrop::Cancelled&) {
            throw std::runtime_error("zarrcrop: native read cancelled");
        }
    }
    warn_thread_shortfall();
}

void call_python(const std::function<void()>& call) {
    // Counted for the whole call, not only while taking the GIL: the call releases and takes
    // the GIL again inside (socket reads), which must not happen after finalization began.
    g_reacquiring.fetch_add(1, std::memory_order_seq_cst);
    struct Done {
        ~Done() { g_reacquiring.fetch_sub(1, std::memory_order_seq_cst); }
    } done;
    if (g_exiting.load(std::memory_order_seq_cst))
        throw std::runtime_error("the Python interpreter is exiting");
    py::gil_scoped_acquire gil;
    call();
}

void register_native_call(py::module_& /*m*/) {
    g_main_thread.store(
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>());
    static const int registered = pthread_atfork(nullptr, nullptr, after_fork_child);
    (void)registered;
    py::module_::import("atexit").attr("register")(py::cpp_function([] { at_exit(); }));
}

}  // namespace zarrcrop_bindings
