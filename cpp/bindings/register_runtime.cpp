// Process-wide runtime: thread pool settings, library versions, and test hooks for kernels.
#include "../core/bitshuffle.hpp"
#include "../core/blosc_decoder.hpp"
#include "../core/codecs.hpp"
#include "../core/thread_pool.hpp"
#include "bindings.hpp"

void register_runtime(py::module_& m) {
    m.def("set_num_threads", &zarrcrop::set_num_threads, py::arg("n"),
          "Size the native thread pool (the calling thread counts as one).");
    m.attr("MAX_THREADS") = zarrcrop::kMaxThreads;
    m.def("get_num_threads", &zarrcrop::get_num_threads,
          "Size of the native thread pool (default: CPUs in this process's affinity mask).");
    m.def("available_cpus", &zarrcrop::available_cpus,
          "CPUs this process may run on (sched_getaffinity).");
    m.attr("blosc_version") = zarrcrop::blosc_library_version();
    m.def("gzip_available", &zarrcrop::gzip_available,
          "Whether gzip chunks can be decoded natively (the bundled zlib-ng is version 2).");
    m.def(
        "_bitunshuffle_u8",
        [](const py::bytes& data, const std::string& impl) -> py::object {
            const std::string src = data;
            if (src.size() % 8 != 0) throw std::invalid_argument("length must be a multiple of 8");
            std::string dst(src.size(), '\0');
            const auto* in = reinterpret_cast<const uint8_t*>(src.data());
            auto* out = reinterpret_cast<uint8_t*>(dst.data());
            if (impl == "auto") {
                zarrcrop::bitunshuffle_u8(in, out, src.size());
            } else if (!zarrcrop::bitunshuffle_u8_with(impl.c_str(), in, out, src.size())) {
                return py::none();
            }
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("impl") = "auto",
        "Test hook: undo Blosc's bitshuffle of 1-byte items (None if impl is unavailable).");
    m.def(
        "_bitunshuffle_u8_range",
        [](const py::bytes& data, std::size_t start, std::size_t stop,
           const std::string& impl) -> py::object {
            const std::string src = data;
            if (src.size() % 8 != 0) throw std::invalid_argument("length must be a multiple of 8");
            if (start > stop || stop > src.size())
                throw std::invalid_argument("need 0 <= start <= stop <= len(data)");
            std::string dst(stop - start, '\0');
            const auto* in = reinterpret_cast<const uint8_t*>(src.data());
            auto* out = reinterpret_cast<uint8_t*>(dst.data());
            const std::size_t planes = src.size() / 8;
            if (impl == "auto") {
                zarrcrop::bitunshuffle_u8_range(in, planes, start, stop, out);
            } else if (!zarrcrop::bitunshuffle_u8_range_with(impl.c_str(), in, planes, start,
                                                             stop, out)) {
                return py::none();
            }
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("start"), py::arg("stop"), py::arg("impl") = "auto",
        "Test hook: items [start, stop) of a bit-shuffled block of 1-byte items.");
    m.def(
        "_bitunshuffle_items",
        [](const py::bytes& data, std::size_t typesize, std::size_t start,
           std::size_t stop) -> py::bytes {
            const std::string src = data;
            if (typesize == 0 || src.size() % typesize != 0 || (src.size() / typesize) % 8 != 0)
                throw std::invalid_argument("need a multiple of 8 items of typesize bytes");
            const std::size_t n = src.size() / typesize;
            if (start > stop || stop > n)
                throw std::invalid_argument("need 0 <= start <= stop <= items");
            std::string dst((stop - start) * typesize, '\0');
            std::string tmp(dst.size(), '\0');
            zarrcrop::blosc1_bitunshuffle_items(
                reinterpret_cast<const uint8_t*>(src.data()), n, typesize, start, stop,
                reinterpret_cast<uint8_t*>(dst.data()), reinterpret_cast<uint8_t*>(tmp.data()));
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("typesize"), py::arg("start"), py::arg("stop"),
        "Test hook: items [start, stop) of a Blosc1 bit-shuffled block of typesize-byte items.");
}
