#include "../core/blosc_decoder.hpp"
#include "../core/thread_pool.hpp"
#include "bindings.hpp"

void register_threads(py::module_& m) {
    m.def("set_num_threads", &zarrcrop::set_num_threads, py::arg("n"),
          "Size the native thread pool (the calling thread counts as one).");
    m.def("get_num_threads", &zarrcrop::get_num_threads,
          "Size of the native thread pool (default: CPUs in this process's affinity mask).");
    m.def("available_cpus", &zarrcrop::available_cpus,
          "CPUs this process may run on (sched_getaffinity).");
    m.attr("blosc_version") = zarrcrop::blosc_library_version();
}
