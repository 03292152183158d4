// zarrcrop._core: the private extension module. It only wires the registration functions.
#include "bindings.hpp"
#include "native_call.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "zarrcrop native core (private; use the zarrcrop package)";
    register_errors(m);
    zarrcrop_bindings::register_native_call(m);
    register_runtime(m);
    register_reader(m);
    register_testing(m);
}
