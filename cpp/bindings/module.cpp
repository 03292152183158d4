// zarrcrop._core: the private extension module. It only wires the registration functions.
#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "zarrcrop native core (private; use the zarrcrop package)";
    register_errors(m);
    register_runtime(m);
    register_reader(m);
}
