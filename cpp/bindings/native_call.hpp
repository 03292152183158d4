// Runs native work with the GIL released, for every entry point that releases it:
// - Ctrl-C: on the main thread, a SIGINT handler chained in front of Python's raises a flag
//   the work polls between tasks; the call then ends within a task and Python's handler runs
//   (KeyboardInterrupt, or the user's handler: if that does not raise, the work runs again).
// - Interpreter exit: zarrcrop's atexit hook cancels work in flight and marks the process as
//   exiting. A thread whose work ends after that never takes the GIL back (Python 3.11-3.13
//   would end it with pthread_exit inside pybind11's noexcept release guard: std::terminate);
//   it sleeps until the process exits. Work started after that runs with the GIL held.
// - Thread shortfalls of the pool are reported once as a RuntimeWarning.
// Arguments the work uses must be private copies made before the call (with the GIL held).
#pragma once

#include <functional>

#include "../core/runtime/cancel.hpp"
#include "bindings.hpp"

namespace zarrcrop_bindings {

void run_native(const std::function<void(const zarrcrop::CancelFlags&)>& work);

// Runs `call` with the GIL held on a thread of zarrcrop's own (the I/O stage's threads calling
// a Python object-store client). Interpreter exit waits for calls in progress (they are bounded
// by the client's timeouts); once it has begun, no call starts: std::runtime_error instead.
void call_python(const std::function<void()>& call);

// Installs the atexit hook and records the main thread (module init).
void register_native_call(py::module_& m);

}  // namespace zarrcrop_bindings
